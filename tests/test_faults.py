"""Faults around the server: the database going away mid-upload. Requests during the outage
get 503 with Retry-After (never a 500, never a lost acknowledged byte), and the upload completes
once the database is back."""

from __future__ import annotations

import asyncio
import hashlib
import os
from urllib.parse import urlsplit

import pytest

from omr_tus.app import create_app

from .conftest import make_settings, users_and_tokens
from .services import TcpProxy

MiB = 1024 * 1024


@pytest.fixture
async def proxied(aiohttp_client, tmp_path, postgres_url):
    """A server whose PostgreSQL is reached through a proxy the test can cut."""
    url = urlsplit(postgres_url)
    proxy = await TcpProxy(url.hostname, url.port or 5432).start()
    through = postgres_url.replace(f"{url.hostname}:{url.port or 5432}", f"127.0.0.1:{proxy.port}")
    api = await users_and_tokens(await aiohttp_client(create_app(make_settings(tmp_path, through))))
    yield api, proxy
    await proxy.cut()


async def until_not_503(request, attempts: int = 20):
    """What a client does on 503: wait Retry-After, try again."""
    for _ in range(attempts):
        resp = await request()
        if resp.status != 503:
            return resp
        await asyncio.sleep(0.1)
    return resp


async def test_database_outage_mid_upload_answers_503_and_the_upload_completes_after(proxied):
    api, proxy = proxied
    data = os.urandom(3 * MiB)
    path = await api.create(len(data), {"filename": "x.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(path, 0, data[:MiB])).status == 204

    await proxy.cut()
    for request in (lambda: api.patch(path, MiB, data[MiB:2 * MiB]), lambda: api.head(path),
                    lambda: api.client.get("/api/batches", headers=api.auth())):
        resp = await request()
        assert resp.status == 503, (resp.status, await resp.text())
        assert resp.headers["Retry-After"] == "2"
        if resp.method != "HEAD":  # a HEAD answer has no body
            assert "retry" in await resp.text()
    resp = await api.client.get("/api/batches", headers=api.auth())
    assert "retry" in (await resp.json())["detail"]  # the JSON API keeps its error shape

    await proxy.resume()
    resp = await until_not_503(lambda: api.head(path))
    assert resp.status == 200
    offset = int(resp.headers["Upload-Offset"])
    assert offset in (MiB, 2 * MiB)  # the 503 PATCH's bytes count only if their offset was saved
    resp = await until_not_503(lambda: api.patch(path, offset, data[offset:]))
    assert resp.status == 204, await resp.text()
    assert (await api.batch(resp.headers["Batch-Id"]))["sha256"] == hashlib.sha256(data).hexdigest()
