"""No user starves the others on the upload side (issue 15): reservations counted from the
database, limited per user and released when idle; ownership checked before any lock."""

import asyncio
from urllib.parse import urlsplit

from omr_tus.app import create_app
from omr_tus.http.keys import STORE

from .conftest import PASSWORD, make_settings
from .helpers import Api
from .test_tus_concat import batch_of, create_final, partial
from .test_tus_resilience import raw_patch

GIB = 1024**3
MIB = 1024**2


def store_of(api: Api, free: int, monkeypatch) -> None:
    """The store reports `free` bytes free (the RAM disk of the report, without filling one)."""
    monkeypatch.setattr(api.client.app[STORE], "free_space", lambda: free)


async def post(api: Api, length: int, user: str):
    return await api.client.post("/files/", headers=api.tus(user, **{"Upload-Length": str(length)}))


async def test_one_users_reservations_leave_room_for_the_others(api, monkeypatch):
    """The report: one user's body-less creations of 60 % and 39 % of the store made another
    user's 500 MiB creation fail. One user may now reserve half of the free space."""
    free = int(23.5 * GIB)
    store_of(api, free, monkeypatch)
    resp = await post(api, int(free * 0.60), "alice")
    assert resp.status == 507 and "one user may take" in await resp.text()
    assert (await post(api, int(free * 0.39), "alice")).status == 201
    resp = await post(api, 500 * MIB, "bob")
    assert resp.status == 201, await resp.text()


async def test_reservations_survive_a_restart(api_with, aiohttp_client, tmp_path, database_url, monkeypatch):
    api = await api_with(reservation_user_share=1.0)
    store_of(api, 10 * GIB, monkeypatch)
    assert (await post(api, 9 * GIB, "alice")).status == 201
    again = Api(
        await aiohttp_client(create_app(make_settings(tmp_path, database_url, reservation_user_share=1.0)))
    )
    await again.login("bob", PASSWORD)
    store_of(again, 10 * GIB, monkeypatch)
    resp = await post(again, 2 * GIB, "bob")
    assert resp.status == 507 and "1024.00MB free" in await resp.text()


async def test_an_idle_upload_loses_its_reservation_not_its_bytes(api_with, monkeypatch):
    api = await api_with(reservation_user_share=1.0, reservation_idle_timeout=1.0)
    store_of(api, 10 * MIB, monkeypatch)
    path = await api.create(8 * MIB)
    assert (await api.patch(path, 0, b"a" * MIB)).status == 204
    assert (await post(api, 6 * MIB, "bob")).status == 507  # alice's 7 MiB are still promised
    await asyncio.sleep(1.2)
    resp = await post(api, 6 * MIB, "bob")  # alice's upload sat idle: its reservation is gone
    assert resp.status == 201, await resp.text()
    bobs = urlsplit(resp.headers["Location"]).path
    resp = await api.patch(path, MIB, b"b" * MIB)  # her 7 MiB no longer fit beside bob's 6
    assert resp.status == 507 and "free" in await resp.text()
    assert (await api.head(path)).headers["Upload-Offset"] == str(MIB)  # her bytes are kept
    assert (await api.client.delete(bobs, headers=api.tus("bob"))).status == 204
    assert (await api.patch(path, MIB, b"b" * 7 * MIB)).status == 204  # she reserves again and completes


async def test_a_stranger_neither_interrupts_nor_waits_on_the_owners_paused_patch(api):
    """The report: a stranger's HEAD interrupted the owner's paused PATCH (the lock was taken
    before the ownership check)."""
    path = await api.create(1000)
    reader, writer = await raw_patch(api, path, 0, 1000, b"a" * 300)
    try:
        await asyncio.sleep(0.8)  # paused longer than stall_timeout: a lock waiter would stop it
        for method in ("HEAD", "PATCH", "DELETE"):
            headers = api.tus(
                "bob", **{"Upload-Offset": "300", "Content-Type": "application/offset+octet-stream"}
            )
            resp = await asyncio.wait_for(api.client.request(method, path, headers=headers, data=b"x"), 0.5)
            assert resp.status == 404, (method, resp.status)
        writer.write(b"b" * 700)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.split()[1] == b"204", status
    finally:
        writer.close()
    assert (await api.head(path)).headers["Upload-Offset"] == "1000"


META = {"filename": "f.zip", "upload_type": "zip_with_qr"}


async def test_a_final_cannot_repeat_or_reuse_a_partial(api):
    """The report: `final;/files/P /files/P ...` (200 times) filled the store from a 2 MiB
    upload; a final built from an already-used partial was a 0-byte batch."""
    p, q = await partial(api, b"p" * 1000, 1000), await partial(api, b"q" * 10, 10)
    resp = await create_final(api, f"{p} {q} {p}", META, status=400)
    assert f"names partial upload {p.rsplit('/', 1)[1]} twice" in await resp.text()
    final = urlsplit((await create_final(api, f"{p} {q}", META)).headers["Location"]).path
    assert (await batch_of(api, final))["size"] == 1010
    for urls in (p, f"{q} {p}"):  # already part of a completed final
        resp = await create_final(api, urls, META, status=400)
        assert "is already part of final upload" in await resp.text()
    r, s = await partial(api, None, 10), await partial(api, None, 10)
    waiting = await create_final(api, r, META)  # waiting for r
    # the same final sent again (its answer lost) is that final; another one with r is refused
    assert (await create_final(api, r, META)).headers["Location"] == waiting.headers["Location"]
    resp = await create_final(api, f"{s} {r}", META, status=400)
    assert "is already part of final upload" in await resp.text()


async def test_a_final_needs_room_for_its_copy(api_with, monkeypatch):
    api = await api_with(reservation_user_share=1.0)
    p = await partial(api, b"p" * MIB, MIB)
    store_of(api, MIB // 2, monkeypatch)
    resp = await create_final(api, p, META, status=507)
    assert "free" in await resp.text()
    store_of(api, 10 * MIB, monkeypatch)  # a partial of deferred length: checked when its length is known
    deferred = await api.create(None, **{"Upload-Concat": "partial"})
    await create_final(api, deferred, META)
    resp = await api.patch(deferred, 0, b"", **{"Upload-Length": str(6 * MIB)})  # 6 MiB, then 6 MiB copied
    assert resp.status == 507 and "free" in await resp.text()
    assert (await api.patch(deferred, 0, b"d" * 4 * MIB, **{"Upload-Length": str(4 * MIB)})).status == 204


async def test_a_legacy_upload_reserves_its_chunks_to_come(api_with, monkeypatch):
    from .test_legacy_chunks import send

    api = await api_with(reservation_user_share=1.0)
    store_of(api, 10 * MIB, monkeypatch)
    first = await send(
        api, b"c" * MIB, chunk_index=0, total_chunks=8, filename="a.zip", upload_type="zip_with_qr"
    )
    assert (await post(api, 5 * MIB, "bob")).status == 507  # 7 MiB are promised to alice's chunks
    body = await send(
        api,
        b"c" * MIB,
        status=507,
        chunk_index=0,
        total_chunks=12,
        filename="b.zip",
        upload_type="zip_with_qr",
    )
    assert "free" in body["detail"]
    for i in range(1, 8):
        last = await send(api, b"c" * MIB, chunk_index=i, total_chunks=8, upload_id=first["upload_id"])
    assert last["is_complete"]
    assert (await post(api, 5 * MIB, "bob")).status == 201


def store_of_capacity(api: Api, capacity: int, monkeypatch) -> None:
    """The store holds `capacity` bytes: its free space drops as bytes land in it."""
    store = api.client.app[STORE]

    def free():
        return capacity - sum(f.stat().st_size for f in store.directory.rglob("*") if f.is_file())

    monkeypatch.setattr(store, "free_space", free)


async def test_a_deferred_length_patch_claims_its_body(api_with, monkeypatch):
    """A declared 8 MiB upload is 507 (over half of 10 MiB): the same bytes sent to an upload
    of deferred length are too, before a byte is written; a body within the share passes."""
    api = await api_with(reservation_user_share=0.5)
    store_of(api, 10 * MIB, monkeypatch)
    assert (await post(api, 8 * MIB, "alice")).status == 507
    path = await api.create(None)
    resp = await api.patch(path, 0, b"x" * 8 * MIB)
    assert resp.status == 507, await resp.text()
    assert (await api.head(path)).headers["Upload-Offset"] == "0"
    assert (await api.patch(path, 0, b"x" * 4 * MIB)).status == 204


async def test_a_chunked_deferred_length_body_is_stopped_at_the_share(api_with, monkeypatch):
    """Without Content-Length the body claims STEP bytes at a time: it is stopped (507) once
    the next step does not fit, and the bytes that did are kept."""
    api = await api_with(reservation_user_share=0.5)
    store_of(api, 40 * MIB, monkeypatch)
    path = await api.create(None)

    async def body():
        for _ in range(30):
            yield b"x" * MIB

    resp = await api.client.patch(
        path,
        data=body(),
        headers=api.tus("alice", **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
    )
    assert resp.status == 507, await resp.text()
    kept = int((await api.head(path)).headers["Upload-Offset"])
    assert 0 < kept <= 20 * MIB


async def test_a_direct_legacy_upload_claims_its_space(api_with, monkeypatch):
    import aiohttp

    api = await api_with(reservation_user_share=0.5)
    store_of(api, 10 * MIB, monkeypatch)
    data = aiohttp.FormData()
    data.add_field("upload_type", "zip_with_qr")
    data.add_field("file", b"x" * 6 * MIB, filename="a.zip", content_type="application/zip")
    resp = await api.client.post("/api/batches/upload", data=data, headers=api.auth("alice"))
    assert resp.status == 507, (resp.status, await resp.text())
    assert (await api.get_json("/api/batches"))["batches"] == []


async def test_bytes_held_count_against_the_share(api_with, monkeypatch):
    """The review: 'reserve half of what is free, write all but one byte', repeated, held
    the whole store. What an upload holds counts like what it is owed."""
    api = await api_with(reservation_user_share=0.5)
    store_of_capacity(api, 16 * MIB, monkeypatch)
    refused = False
    for _ in range(8):
        size = api.client.app[STORE].free_space() // 2 - 4096
        resp = await post(api, size, "alice")
        if resp.status == 507:
            refused = True
            break
        path = urlsplit(resp.headers["Location"]).path
        assert (await api.patch(path, 0, b"x" * (size - 1))).status == 204
        await asyncio.sleep(0.6)  # past the reservation snapshot
    assert refused
    assert (await post(api, MIB, "bob")).status == 201


async def test_empty_patches_do_not_keep_a_reservation_alive(api_with, monkeypatch):
    api = await api_with(reservation_user_share=1.0, reservation_idle_timeout=1.0)
    store_of(api, 10 * MIB, monkeypatch)
    path = await api.create(8 * MIB)
    for _ in range(4):
        await asyncio.sleep(0.5)
        assert (await api.patch(path, 0, b"")).status == 204  # nothing written
    resp = await post(api, 6 * MIB, "bob")
    assert resp.status == 201, "alice's idle upload (0 bytes in 2 s) still holds its 8 MiB"


async def test_a_slow_checksummed_patch_keeps_its_reservation_while_bytes_arrive(api_with, monkeypatch):
    """With Upload-Checksum the body is all or nothing: its offset is not committed while it
    arrives, but its activity is, so its reservation does not lapse."""
    import base64
    import hashlib

    api = await api_with(reservation_user_share=1.0, reservation_idle_timeout=1.0)
    store_of(api, 10 * MIB, monkeypatch)
    path = await api.create(8 * MIB)
    body = b"a" * 8 * MIB
    digest = base64.b64encode(hashlib.sha1(body).digest()).decode()
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    writer.write(
        (
            f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {api.tokens['alice']}\r\nUpload-Offset: 0\r\n"
            f"Upload-Checksum: sha1 {digest}\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
    )
    try:
        for i in range(0, 2 * MIB, 64 * 1024):  # a slow but live client: 2 MiB over 2 s and more
            writer.write(body[i : i + 64 * 1024])
            await writer.drain()
            await asyncio.sleep(0.06)
        resp = await post(api, 6 * MIB, "bob")
        assert resp.status == 507, "bob was promised space that alice's live PATCH is still filling"
    finally:
        writer.close()


async def test_the_copy_of_a_deferred_partial_stays_reserved(api_with, monkeypatch):
    """Once every partial of a waiting final has a length, the final has one: its copy is
    reserved in the database, not only for a moment in memory."""
    api = await api_with(reservation_user_share=1.0)
    store_of(api, 10 * MIB, monkeypatch)
    deferred = await api.create(None, **{"Upload-Concat": "partial"})
    await create_final(api, deferred, {"filename": "f.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(deferred, 0, b"", **{"Upload-Length": str(4 * MIB)})).status == 204  # 4 + 4 copy
    await asyncio.sleep(0.7)  # past the reservation snapshot
    assert (await post(api, 5 * MIB, "bob")).status == 507


async def test_a_terminated_final_frees_its_partials(api):
    p = await partial(api, None, 10)  # not yet complete: the final waits
    final = urlsplit(
        (await create_final(api, p, {"filename": "f.zip", "upload_type": "zip_with_qr"})).headers["Location"]
    ).path
    assert (await api.client.delete(final, headers=api.tus("alice"))).status == 204
    resp = await api.client.post("/files/", headers=api.tus("alice", **{"Upload-Concat": f"final;{p}"}))
    assert resp.status == 201, await resp.text()
