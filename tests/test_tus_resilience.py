"""Locking, dropped connections, racing writers, expiry and crash reconciliation."""

import asyncio
import hashlib
import os

import pytest

from omr_tus.http.keys import REPO, SERVICE, STORE

from .helpers import Api, eventually


async def raw_patch(api: Api, path: str, offset: int, total: int, first: bytes):
    """Starts a PATCH on a raw socket announcing `total` bytes and sends only `first`."""
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {api.client.host}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Bearer {api.tokens['alice']}\r\nUpload-Offset: {offset}\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    writer.write(head.encode() + first)
    await writer.drain()
    return reader, writer


async def wait_offset(api: Api, path: str, expected: int) -> int:
    async def offset() -> int:
        return int((await api.head(path)).headers.get("Upload-Offset", -1))

    return await eventually(offset, lambda offset: offset == expected)


async def test_client_disconnect_mid_patch_keeps_bytes(api):
    path = await api.create(1000)
    _, writer = await raw_patch(api, path, 0, 1000, b"a" * 400)
    await asyncio.sleep(0.2)
    writer.close()
    assert await wait_offset(api, path, 400) == 400
    resp = await api.patch(path, 400, b"b" * 600)
    assert resp.status == 204
    batch = await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}")
    assert batch["size"] == 1000


async def test_silent_writer_yields_its_lock_to_a_resuming_client(api):
    """A connection that went silent (no FIN) must not block the resume until a timeout."""
    path = await api.create(1000)
    _, writer = await raw_patch(api, path, 0, 1000, b"a" * 300)
    try:
        await asyncio.sleep(0.1)
        offset = int((await api.head(path)).headers["Upload-Offset"])  # asks the silent writer to stop
        assert offset == 300
        resp = await api.patch(path, 300, b"c" * 700)
        assert resp.status == 204, await resp.text()
        assert "Batch-Id" in resp.headers
    finally:
        writer.close()


async def test_idle_writer_is_stopped_and_keeps_its_bytes(api_with):
    """A client that stops sending mid-body, with nobody else asking for the upload."""
    api = await api_with(idle_timeout=0.3)
    path = await api.create(1000)
    _, writer = await raw_patch(api, path, 0, 1000, b"a" * 250)
    try:
        offset = -1
        for _ in range(200):  # no HEAD here: HEAD would itself ask the writer to stop
            offset = (await api.client.app[REPO].upload(path.rsplit("/", 1)[1])).upload_offset
            if offset == 250:
                break
            await asyncio.sleep(0.05)
        assert offset == 250
    finally:
        writer.close()


async def test_racing_patches_apply_once(api):
    data = os.urandom(512 * 1024)
    path = await api.create(len(data))

    async def body():
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]
            await asyncio.sleep(0.02)  # a live, steady client: never silent long enough to be interrupted

    results = await asyncio.gather(api.patch(path, 0, body()), api.patch(path, 0, body()))
    statuses = sorted(r.status for r in results)
    assert statuses[0] == 204 and statuses[1] in (409, 423), statuses
    done = next(r for r in results if r.status == 204)
    batch = await api.batch(done.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("settle", [0.0, 0.1])
async def test_patch_waiting_on_a_live_writer_gets_423(api, settle):
    api.client.app[SERVICE]._locks.timeout = 0.3
    path = await api.create(100)
    gate = asyncio.Event()

    async def held_body():
        yield b"a" * 10
        for _ in range(100):  # live but unfinished: a byte every 50 ms, for at most 5 s
            if gate.is_set():
                return
            await asyncio.sleep(0.05)
            yield b"a"

    first = asyncio.ensure_future(api.patch(path, 0, held_body()))
    await asyncio.sleep(0.2 + settle)
    second = await api.patch(path, 0, b"b" * 5)
    gate.set()
    assert second.status == 423
    assert (await first).status == 204


async def test_expired_upload_is_removed_and_answers_410(api):
    service = api.client.app[SERVICE]
    path = await api.create(10)
    await api.patch(path, 0, b"abc")
    upload_id = path.rsplit("/", 1)[1]
    service._settings = service._settings.__class__(**{**service._settings.__dict__, "upload_expiry": 0})
    await api.patch(path, 3, b"d")  # its expiry is now in the past
    assert await service.expire_due() == 1
    assert (await api.head(path)).status == 410
    assert (await api.patch(path, 4, b"e")).status == 410
    assert not api.client.app[STORE].path(upload_id).exists()


async def test_janitor_expires_in_the_background(api_with):
    api = await api_with(upload_expiry=0, janitor_interval=0.1)
    path = await api.create(10)
    await eventually(lambda: api.head(path), lambda resp: resp.status == 410)


async def test_unacknowledged_bytes_after_a_crash_are_dropped(api):
    """Bytes on the store past the recorded offset were never acknowledged."""
    path = await api.create(10)
    await api.patch(path, 0, b"abc")
    with open(api.client.app[STORE].path(path.rsplit("/", 1)[1]), "ab") as f:
        f.write(b"garbage")
    api.client.app[SERVICE]._in_sync.clear()  # as after the restart that follows a crash
    assert (await api.head(path)).headers["Upload-Offset"] == "3"
    resp = await api.patch(path, 3, b"defghij")
    batch = await api.batch(resp.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(b"abcdefghij").hexdigest()


async def test_lost_store_bytes_move_the_offset_back(api):
    """A RAM disk emptied by a reboot: the server must not claim bytes it no longer has."""
    path = await api.create(10)
    await api.patch(path, 0, b"abcdef")
    os.truncate(api.client.app[STORE].path(path.rsplit("/", 1)[1]), 2)
    api.client.app[SERVICE]._in_sync.clear()  # as after the reboot that emptied the RAM disk
    assert (await api.head(path)).headers["Upload-Offset"] == "2"
    resp = await api.patch(path, 2, b"cdefghij")
    assert resp.status == 204
    batch = await api.batch(resp.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(b"abcdefghij").hexdigest()
