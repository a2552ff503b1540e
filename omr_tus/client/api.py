"""The JSON API calls the commands make, each answering the server's JSON (or raising
ServerError with its message)."""

from __future__ import annotations

from typing import BinaryIO
from urllib.parse import quote

import aiohttp

from .http import ClientError, check, session

RESULTS_BLOCK = 64 * 1024


async def login(server: str, username: str, password: str) -> str:
    """A bearer token for the user (POST /api/auth/login, form fields)."""
    async with session() as http:
        async with http.post(
            server + "/api/auth/login", data={"username": username, "password": password}
        ) as r:
            token = (await (await check(r)).json()).get("access_token")
    if not token:
        raise ClientError("the server answered the login without an access_token")
    return token


class Api:
    def __init__(self, http: aiohttp.ClientSession, server: str):
        self.http = http
        self.server = server

    async def _get(self, path: str, **params: str) -> dict:
        async with self.http.get(self.server + path, params=params) as response:
            return await (await check(response)).json()

    async def batches(self, status: str | None = None, limit: int = 50) -> dict:
        params = {"limit": str(limit), **({"status": status} if status else {})}
        return await self._get("/api/batches", **params)

    async def batch(self, batch_id: str) -> dict:
        return await self._get(batch_path(batch_id))

    async def delete_batch(self, batch_id: str) -> dict:
        """Deletes the batch; returns what it was (for the user's record)."""
        batch = await self.batch(batch_id)
        async with self.http.delete(self.server + batch_path(batch_id)) as response:
            await check(response)
        return batch

    async def progress(self, batch_id: str) -> dict:
        return await self._get(batch_path(batch_id, "/progress"))

    async def results(self, batch_id: str) -> dict:
        return await self._get(batch_path(batch_id, "/results"))

    async def results_csv(self, batch_id: str, out: BinaryIO) -> None:
        """Copies the CSV to `out` as it arrives: a batch of any size in little memory."""
        async with self.http.get(self.server + batch_path(batch_id, "/results.csv")) as response:
            await check(response)
            async for block in response.content.iter_chunked(RESULTS_BLOCK):
                out.write(block)
        out.flush()


def batch_path(batch_id: str, suffix: str = "") -> str:
    """A batch id is typed by the user: quoted, so it can only ever name a batch."""
    return f"/api/batches/{quote(batch_id, safe='')}{suffix}"
