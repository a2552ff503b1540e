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

GIB = 1024 ** 3
MIB = 1024 ** 2


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
    assert resp.status == 507 and "one user may reserve" in await resp.text()
    assert (await post(api, int(free * 0.39), "alice")).status == 201
    resp = await post(api, 500 * MIB, "bob")
    assert resp.status == 201, await resp.text()


async def test_reservations_survive_a_restart(api_with, aiohttp_client, tmp_path, database_url, monkeypatch):
    api = await api_with(reservation_user_share=1.0)
    store_of(api, 10 * GIB, monkeypatch)
    assert (await post(api, 9 * GIB, "alice")).status == 201
    again = Api(await aiohttp_client(create_app(make_settings(tmp_path, database_url, reservation_user_share=1.0))))
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
            headers = api.tus("bob", **{"Upload-Offset": "300", "Content-Type": "application/offset+octet-stream"})
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
    r = await partial(api, None, 10)
    await create_final(api, r, META)  # waiting for r
    assert "is already part of final upload" in await (await create_final(api, r, META, status=400)).text()


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
    first = await send(api, b"c" * MIB, chunk_index=0, total_chunks=8, filename="a.zip", upload_type="zip_with_qr")
    assert (await post(api, 5 * MIB, "bob")).status == 507  # 7 MiB are promised to alice's chunks
    body = await send(api, b"c" * MIB, status=507, chunk_index=0, total_chunks=12, filename="b.zip",
                      upload_type="zip_with_qr")
    assert "free" in body["detail"]
    for i in range(1, 8):
        last = await send(api, b"c" * MIB, chunk_index=i, total_chunks=8, upload_id=first["upload_id"])
    assert last["is_complete"]
    assert (await post(api, 5 * MIB, "bob")).status == 201
