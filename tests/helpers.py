"""A thin tus/API client over aiohttp's test client, so test tables stay short; and eventually(),
the one way tests wait for something the server does in the background."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp.test_utils import TestClient

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
KIND = {"upload_type": "zip_with_qr"}  # every upload but a tus partial one names its type
TEMPLATE = json.loads(
    (Path(__file__).resolve().parents[1] / "config" / "templates" / "exam-60-mcq4.json").read_text()
)
T = TypeVar("T")


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    until: Callable[[T], object] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (AssertionError,),
    what: str | None = None,
) -> T:
    """Calls `check` (a plain or an async function) every `interval` seconds until `until`
    holds for what it returns, and returns that. An exception of `retry_on` it raises counts
    as "not yet"; any other goes up at once. After `timeout` seconds: an AssertionError that
    says what was awaited and what `check` last returned or raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        error: BaseException | None = None
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except retry_on as exc:
            error, last = exc, f"it last raised {exc!r}"
        else:
            if until(value):
                return value
            last = f"it last returned {value!r}"
        if loop.time() >= deadline:
            name = what or getattr(check, "__qualname__", repr(check))
            raise AssertionError(f"waited {timeout:g} s for {name}; {last}") from error
        await asyncio.sleep(interval)


async def recorded_batch(base: str, headers: dict[str, str], batch_id: str, timeout: float = 10.0) -> dict:
    """A running server's batch once its sha256 is recorded: in the read that moves the completed
    file to durable storage, a moment after the completing response."""
    async with aiohttp.ClientSession() as session:

        async def batch() -> dict:
            async with session.get(f"{base}/api/batches/{batch_id}", headers=headers) as r:
                assert r.status == 200, (r.status, await r.text())
                return await r.json()

        return await eventually(
            batch, lambda batch: batch["sha256"], timeout=timeout, what=f"batch {batch_id}'s sha256"
        )


def encode_metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in meta.items())


class Api:
    def __init__(self, client: TestClient):
        self.client = client
        self.tokens: dict[str, str] = {}

    async def login(self, username: str, password: str) -> str:
        resp = await self.client.post("/api/auth/login", data={"username": username, "password": password})
        assert resp.status == 200, await resp.text()
        self.tokens[username] = (await resp.json())["access_token"]
        return self.tokens[username]

    def auth(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def tus(self, user: str = "alice", **extra: str) -> dict[str, str]:
        """tus request headers; a creation made with them is a ZIP with QR codes (the server reads
        Upload-Metadata on creation only) unless `extra` brings its own Upload-Metadata."""
        return {**TUS, "Upload-Metadata": encode_metadata(KIND), **self.auth(user), **extra}

    async def create(
        self, length: int | None = None, meta: dict[str, str] | None = None, user: str = "alice", **extra: str
    ) -> str:
        """Creates an upload and returns its path (/files/<id>); a ZIP with QR codes unless `meta`
        says otherwise."""
        headers = self.tus(user, **extra)
        if length is None:
            headers.setdefault("Upload-Defer-Length", "1")
        else:
            headers["Upload-Length"] = str(length)
        meta = meta if meta and "upload_type" in meta else {**KIND, **(meta or {})}
        headers["Upload-Metadata"] = encode_metadata(meta)
        resp = await self.client.post("/files/", headers=headers)
        assert resp.status == 201, (resp.status, await resp.text())
        return urlsplit(resp.headers["Location"]).path

    async def register_task(self, *task_ids: str) -> None:
        """Tasks whose uploads may be zip_no_qr or images: their template is registered (by root),
        now or before (409)."""
        for task_id in task_ids:
            resp = await self.client.post(
                "/api/tasks",
                json={"task_id": task_id, "name": f"Task {task_id}", "template": TEMPLATE},
                headers=self.auth("root"),
            )
            assert resp.status in (201, 409), await resp.text()

    async def patch(self, path: str, offset: int, data: bytes, user: str = "alice", **extra: str):
        headers = {**self.tus(user), **OCTET, "Upload-Offset": str(offset), **extra}
        return await self.client.patch(path, data=data, headers=headers)

    async def head(self, path: str, user: str = "alice"):
        return await self.client.head(path, headers=self.tus(user))

    async def get_json(self, path: str, user: str = "alice", status: int = 200):
        resp = await self.client.get(path, headers=self.auth(user))
        assert resp.status == status, (resp.status, await resp.text())
        return await resp.json()

    async def batch(self, batch_id: str, user: str = "alice") -> dict:
        """The batch once its sha256 is known: it is computed in the read that moves the
        completed file to durable storage, a moment after the completing response."""
        return await eventually(
            lambda: self.get_json(f"/api/batches/{batch_id}", user),
            lambda batch: batch["sha256"],
            what=f"batch {batch_id}'s sha256",
        )
