"""A real TCP server for real tus clients (tuspy, tus-js-client), shared by the client tests.

`live` starts create_app(settings) on 127.0.0.1 with a random port (once per database
backend, through the parametrized `settings` fixture), creates alice, logs her in, and
records every PATCH the server answers, so a test can tell a resumed upload from a
restarted one by what the server itself saw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.http.keys import REPO

from .conftest import PASSWORD
from .helpers import eventually

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@dataclasses.dataclass
class Patch:
    """One PATCH as the server saw it: the offset asked for, the body length declared,
    the status and offset answered."""

    upload_id: str
    offset: int | None
    length: int | None
    status: int | None
    new_offset: int | None


class Live:
    def __init__(self, server, token: str):
        self.server = server
        self.token = token
        self.endpoint = str(server.make_url("/files/"))
        self.patches: list[Patch] = []

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def patches_for(self, upload_id: str) -> list[Patch]:
        return [p for p in self.patches if p.upload_id == upload_id]

    async def head_offset(self, url: str) -> int:
        async with aiohttp.ClientSession() as s:
            async with s.head(
                url, headers={**TUS, **self.headers}, timeout=aiohttp.ClientTimeout(total=10)
            ) as r:
                assert r.status == 200, r.status
                return int(r.headers["Upload-Offset"])

    async def batch(self, upload_id: str, *, timeout: float = 10.0) -> dict:
        """The batch the completed upload became, once its sha256 is known (bounded wait)."""
        async with aiohttp.ClientSession() as s:

            async def listed() -> list[dict]:
                async with s.get(
                    self.server.make_url("/api/batches"),
                    params={"upload_id": upload_id},
                    headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as r:
                    assert r.status == 200, (r.status, await r.text())
                    return (await r.json())["batches"]

            batches = await eventually(
                listed,
                lambda batches: batches and batches[0].get("sha256"),
                timeout=timeout,
                what=f"a batch with a sha256 for upload {upload_id}",
            )
        assert len(batches) == 1, batches
        return batches[0]


def upload_id_of(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def random_file(path: Path, size: int, seed: int = 1) -> str:
    """Writes `size` reproducible random bytes to `path`; returns their sha256."""
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _recorder(live_box: list[Live]):
    @web.middleware
    async def record_patches(request: web.Request, handler):
        if request.method != "PATCH":
            return await handler(request)
        patch = Patch(
            upload_id_of(request.path),
            _int(request.headers.get("Upload-Offset")),
            request.content_length,
            None,
            None,
        )
        live_box[0].patches.append(patch)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            patch.status = exc.status
            raise
        patch.status = response.status
        patch.new_offset = _int(response.headers.get("Upload-Offset"))
        return response

    return record_patches


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


@pytest.fixture
async def live(aiohttp_server, settings) -> Live:
    box: list[Live] = []
    app = create_app(settings)
    app.middlewares.append(_recorder(box))  # innermost: sees what the tus handlers answer
    server = await aiohttp_server(app)
    await auth.create_user(server.app[REPO], "alice", PASSWORD)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            server.make_url("/api/auth/login"),
            data={"username": "alice", "password": PASSWORD},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as r:
            assert r.status == 200, await r.text()
            token = (await r.json())["access_token"]
    box.append(Live(server, token))
    return box[0]
