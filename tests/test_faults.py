"""Faults around the server: the database going away mid-upload (its link cut, or the server
stopped and started), and the store filling up. Requests during an outage get 503 with
Retry-After (never a 500, never a lost acknowledged byte), and the upload completes once the
database is back; a full store answers 507 and harms no other upload."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from urllib.parse import urlsplit

import pytest

from omr_tus.app import create_app

from .conftest import _truncate, make_settings, users_and_tokens
from .helpers import eventually
from .services import TcpProxy

MiB = 1024 * 1024


@pytest.fixture
def pg_url(postgres_url):
    """The session's PostgreSQL database, emptied for this test."""
    asyncio.run(_truncate(postgres_url))
    return postgres_url


@pytest.fixture
async def proxied(aiohttp_client, tmp_path, pg_url):
    """A server whose PostgreSQL is reached through a proxy the test can cut."""
    url = urlsplit(pg_url)
    proxy = await TcpProxy(url.hostname, url.port or 5432).start()
    through = pg_url.replace(f"{url.hostname}:{url.port or 5432}", f"127.0.0.1:{proxy.port}")
    api = await users_and_tokens(await aiohttp_client(create_app(make_settings(tmp_path, through))))
    yield api, proxy
    await proxy.cut()


async def until_not_503(request):
    """What a client does on 503: wait Retry-After, try again."""
    return await eventually(request, lambda resp: resp.status != 503, interval=0.1, what="an answer but 503")


async def test_database_outage_mid_upload_answers_503_and_the_upload_completes_after(proxied):
    api, proxy = proxied
    data = os.urandom(3 * MiB)
    path = await api.create(len(data), {"filename": "x.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(path, 0, data[:MiB])).status == 204

    await proxy.cut()
    for request in (
        lambda: api.patch(path, MiB, data[MiB : 2 * MiB]),
        lambda: api.head(path),
        lambda: api.client.get("/api/batches", headers=api.auth()),
    ):
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


@pytest.fixture
def small_store(tmp_path):
    """A 10 MiB tmpfs as the store of uploads in progress (mounting needs root)."""
    from .conftest import missing_part

    path = tmp_path / "small-store"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        missing_part(f"cannot mount a small tmpfs (needs root): {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_store_answers_507_and_harms_no_other_upload(api_with, small_store):
    api = await api_with(store_dir=str(small_store))
    done = os.urandom(MiB)  # a completed batch: its file has moved to durable storage
    path = await api.create(len(done), {"filename": "d.zip", "upload_type": "zip_with_qr"})
    finished = await api.batch((await api.patch(path, 0, done)).headers["Batch-Id"])
    assert finished["sha256"] == hashlib.sha256(done).hexdigest()

    resp = await api.client.post(
        "/files/",
        headers=api.tus(
            **{"Upload-Length": str(64 * MiB), "Upload-Metadata": "upload_type emlwX3dpdGhfcXI="}
        ),
    )
    assert resp.status == 507 and "free" in await resp.text()  # known not to fit: refused at once

    other = os.urandom(4 * MiB)
    other_path = await api.create(len(other), {"filename": "o.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(other_path, 0, other[: 2 * MiB])).status == 204

    greedy = await api.create(None, {"filename": "g.zip", "upload_type": "zip_with_qr"})  # length unknown
    resp = await api.patch(greedy, 0, os.urandom(12 * MiB))  # its Content-Length is claimed before any byte
    assert resp.status == 507 and "free" in await resp.text()
    assert int((await api.head(greedy)).headers["Upload-Offset"]) == 0

    assert (await api.client.delete(greedy, headers=api.tus())).status == 204

    junk = small_store / "junk"  # something else fills the disk: the write itself runs out of room
    with open(junk, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * MiB)
                f.flush()
    os.truncate(junk, max(0, junk.stat().st_size - MiB))
    resp = await api.patch(other_path, 2 * MiB, other[2 * MiB :])
    assert resp.status == 507 and "full" in await resp.text()
    kept = int((await api.head(other_path)).headers["Upload-Offset"])
    assert 2 * MiB <= kept < 4 * MiB

    junk.unlink()  # space comes back
    resp = await api.patch(other_path, kept, other[kept:])
    assert resp.status == 204
    assert (await api.batch(resp.headers["Batch-Id"]))["sha256"] == hashlib.sha256(other).hexdigest()
    assert (await api.get_json(f"/api/batches/{finished['batch_id']}"))["sha256"] == finished["sha256"]


@pytest.fixture
def local_postgres():
    """This machine's PostgreSQL cluster, which the test stops and starts again (root only).
    Afterwards it is always running, whatever happened in the test."""
    from .conftest import PG_URL, missing_part

    host = urlsplit(PG_URL.replace("+asyncpg", "")).hostname
    if host not in ("127.0.0.1", "localhost") or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        missing_part("stopping PostgreSQL needs root, pg_ctlcluster and the server on this machine")
    version = sorted(os.listdir("/etc/postgresql"))[-1]

    def ctl(action: str) -> None:
        subprocess.run(
            [
                "pg_ctlcluster",
                "--skip-systemctl-redirect",
                version,
                "main",
                action,
                *(["-m", "fast"] if action == "stop" else []),
            ],
            capture_output=True,
            timeout=60,
        )
        if action == "start":
            for _ in range(100):
                if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
                    return
                time.sleep(0.1)

    yield ctl
    ctl("start")


async def test_postgresql_stopped_and_started_mid_upload(aiohttp_client, tmp_path, pg_url, local_postgres):
    api = await users_and_tokens(await aiohttp_client(create_app(make_settings(tmp_path, pg_url))))
    data = os.urandom(3 * MiB)
    path = await api.create(len(data), {"filename": "x.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(path, 0, data[:MiB])).status == 204

    await asyncio.to_thread(local_postgres, "stop")
    try:
        for request in (
            lambda: api.patch(path, MiB, data[MiB : 2 * MiB]),
            lambda: api.head(path),
            lambda: api.client.get("/api/batches", headers=api.auth()),
        ):
            resp = await request()
            assert resp.status == 503 and resp.headers["Retry-After"] == "2", (resp.status, await resp.text())
    finally:
        await asyncio.to_thread(local_postgres, "start")

    resp = await until_not_503(lambda: api.head(path))
    assert resp.status == 200
    offset = int(resp.headers["Upload-Offset"])
    assert offset in (MiB, 2 * MiB)
    resp = await until_not_503(lambda: api.patch(path, offset, data[offset:]))
    assert resp.status == 204, await resp.text()
    assert (await api.batch(resp.headers["Batch-Id"]))["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_full_database_disk_answers_507(api, monkeypatch):
    """The database cannot write (its disk is full): 507 with Retry-After, not 500 or 503."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from omr_tus.http.keys import REPO

    async def full(*_args, **_kwargs):
        raise OperationalError(
            "INSERT INTO uploads ...", {}, sqlite3.OperationalError("database or disk is full")
        )

    monkeypatch.setattr(api.client.app[REPO], "insert_upload", full)
    resp = await api.client.post(
        "/files/",
        headers=api.tus(**{"Upload-Length": "10", "Upload-Metadata": "upload_type emlwX3dpdGhfcXI="}),
    )
    assert resp.status == 507 and resp.headers["Retry-After"] == "60"
    assert "out of disk space" in await resp.text()
