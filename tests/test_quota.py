"""Per-user quotas, enforced at creation (413 naming the quota and the usage) for tus, IETF,
legacy chunk 0 and direct legacy uploads, when a deferred length is declared and as bytes of
unknown length arrive (the bytes before kept); what counts (db/usage.py): a concatenation's
partials once joined are not counted twice, terminated and deleted uploads give their bytes
back; two creations at once never both pass a quota only one fits."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from urllib.parse import urlsplit

import pytest

from omr_tus import errors
from omr_tus.db.models import utcnow
from omr_tus.http.keys import REPO, SERVICE
from omr_tus.uploads import quotas
from omr_tus.uploads.reservations import Reservations

from .helpers import Api
from .test_legacy_chunks import form, send
from .test_tus_concat import create_final, partial
from .test_users_admin import patch_user

META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}


async def usage(api: Api, user: str = "alice") -> int:
    return (await api.get_json("/api/me", user))["usage_bytes"]


def refused(status: int, text: str, user: str, *figures: int) -> None:
    """A 413 for the quota (not for the maximum size), naming the user and the figures in bytes."""
    assert status == 413, (status, text)
    assert f"Quota exceeded: user {user} stores " in text, text
    for figure in figures:
        assert re.search(rf"[ (]{figure} bytes", text), (figure, text)


async def test_tus_creation_past_the_quota_is_413_with_quota_and_usage(api):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    path = await api.create(6000)
    assert (await api.patch(path, 0, b"x" * 4000)).status == 204
    # stores 4000, will add 2000: 4000 more would fit, 4001 not
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "4001"}))
    refused(resp.status, await resp.text(), "alice", 4000, 2000, 10000, 4001)
    await api.create(4000)
    assert (await api.get_json("/api/me"))["usage_bytes"] == 4000
    # bob has no quota; alice's does not concern him
    await api.create(50_000, user="bob")


async def test_a_new_quota_counts_from_the_next_creation(api):
    await api.create(5000)
    await patch_user(api, "alice", {"quota_bytes": 5000})
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "1"}))
    refused(resp.status, await resp.text(), "alice", 5000, 1)


async def test_an_admin_is_subject_to_their_own_quota(api):
    await api.create(5000, user="root")
    await patch_user(api, "root", {"quota_bytes": 1000})
    resp = await api.client.post("/files/", headers=api.tus("root", **{"Upload-Length": "1"}))
    refused(resp.status, await resp.text(), "root", 5000)


async def test_ietf_creation_past_the_quota_is_413(api):
    await patch_user(api, "alice", {"quota_bytes": 1000})
    hdrs = {
        **api.auth(),
        "Upload-Draft-Interop-Version": "8",
        "Upload-Complete": "?0",
        "Upload-Length": "1001",
    }
    resp = await api.client.post("/files/", headers=hdrs)
    refused(resp.status, await resp.text(), "alice", 1000, 1001)
    hdrs["Upload-Length"] = "1000"
    assert (await api.client.post("/files/", headers=hdrs)).status == 201


async def test_legacy_chunk_0_counts_total_chunks_times_its_size(api):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    fields = dict(chunk_index=0, filename="exam.zip", upload_type="zip_with_qr")
    body = await send(api, b"x" * 4000, status=413, total_chunks=3, **fields)
    refused(413, body["detail"], "alice", 10000, 4000, 8000)  # chunk 0 stored, 2 x 4000 to come
    assert await usage(api) == 0  # chunk 0 was taken back with its upload
    body = await send(api, b"x" * 4000, total_chunks=2, **fields)
    assert body["chunks_received"] == 1
    # 4000 stored, 4000 to come: another 2 x 1001 does not fit
    body = await send(api, b"x" * 1001, status=413, total_chunks=2, **fields)
    refused(413, body["detail"], "alice", 5001, 4000, 1001)


async def test_a_one_chunk_legacy_upload_past_the_quota_is_413(api):
    """Nothing is left to come after chunk 0: its own bytes must fit (a review found this open)."""
    await patch_user(api, "alice", {"quota_bytes": 1000})
    fields = dict(chunk_index=0, filename="exam.zip", upload_type="zip_with_qr", total_chunks=1)
    body = await send(api, b"x" * 1001, status=413, **fields)
    refused(413, body["detail"], "alice", 1000)
    assert "already sent take them over it" in body["detail"]
    assert await usage(api) == 0 and (await api.get_json("/api/batches"))["total"] == 0
    body = await send(api, b"x" * 1000, **fields)
    assert body["batch_id"] and await usage(api) == 1000


async def test_an_abandoned_upload_stops_counting_once_it_expires(api):
    """Its promised bytes hold the quota until expiry (the clock moved by its expires_at), then
    give it back."""
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    path = await api.create(10_000)
    assert (await api.patch(path, 0, b"x" * 3000)).status == 204
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "1"}))
    refused(resp.status, await resp.text(), "alice", 3000, 7000, 1)
    assert await api.client.app[SERVICE].expire_due() == 0  # not due yet
    await api.client.app[REPO].update_upload(
        path.rsplit("/", 1)[1], expires_at=utcnow() - dt.timedelta(seconds=1)
    )
    assert await api.client.app[SERVICE].expire_due() == 1
    assert await usage(api) == 0
    await api.create(10_000)


async def test_direct_legacy_upload_past_the_quota_is_413(api):
    await patch_user(api, "alice", {"quota_bytes": 1000})
    data = form(None, upload_type="zip_with_qr")
    data.add_field("file", os.urandom(2000), filename="exam.zip", content_type="application/zip")
    resp = await api.client.post("/api/batches/upload", data=data, headers=api.auth())
    refused(resp.status, (await resp.json())["detail"], "alice", 1000)
    assert await usage(api) == 0


async def test_a_deferred_length_is_checked_when_declared_and_as_bytes_arrive(api):
    await patch_user(api, "alice", {"quota_bytes": 1000})
    path = await api.create(None)
    assert (await api.patch(path, 0, b"x" * 600)).status == 204
    declared = await api.patch(path, 600, b"", **{"Upload-Length": "1001"})
    refused(declared.status, await declared.text(), "alice", 600, 401)
    more = await api.patch(path, 600, b"x" * 401)
    refused(more.status, await more.text(), "alice", 600, 401)
    head = await api.head(path)
    assert head.headers["Upload-Offset"] == "600" and "Upload-Length" not in head.headers
    assert (await api.patch(path, 600, b"x" * 400, **{"Upload-Length": "1000"})).status == 204
    assert await usage(api) == 1000


async def test_tus_creation_with_upload_of_deferred_length_is_413_and_keeps_the_upload(api):
    await patch_user(api, "alice", {"quota_bytes": 100})
    hdrs = api.tus(**{"Upload-Defer-Length": "1", "Content-Type": "application/offset+octet-stream"})
    resp = await api.client.post("/files/", data=b"x" * 101, headers=hdrs)
    refused(resp.status, await resp.text(), "alice", 100, 101)
    head = await api.head(urlsplit(resp.headers["Location"]).path)
    assert head.headers["Upload-Offset"] == "0"


async def test_a_concatenation_is_not_counted_twice(api):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    paths = [await partial(api, b"x" * 4000, 4000) for _ in range(2)]
    await create_final(api, " ".join(paths), meta={"filename": "all.zip"})
    assert await usage(api) == 8000  # the final's; the partials' were joined into it
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "2001"}))
    refused(resp.status, await resp.text(), "alice", 8000)
    await api.create(2000)


async def test_a_final_waiting_for_its_partials_is_not_counted_twice(api):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    paths = [await partial(api, None, 4000) for _ in range(2)]
    await create_final(api, " ".join(paths), meta={"filename": "all.zip"})
    await patch_user(api, "alice", {"quota_bytes": 10_000})  # the server reads every figure again
    await api.create(2000)  # 8000 committed by the partials, none more by the final
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "1"}))
    refused(resp.status, await resp.text(), "alice", 10000)


async def test_usage_drops_when_an_upload_is_terminated_or_its_file_deleted(api):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    path = await api.create(8000)
    assert (await api.patch(path, 0, b"x" * 3000)).status == 204
    assert await usage(api) == 3000
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "3000"}))
    refused(resp.status, await resp.text(), "alice", 3000, 5000)
    assert (await api.client.delete(path, headers=api.tus())).status == 204
    assert await usage(api) == 0
    done = await api.create(3000)
    completed = await api.patch(done, 0, b"x" * 3000)
    await api.batch(completed.headers["Batch-Id"])  # moved to durable storage: location 'durable'
    assert await usage(api) == 3000
    # retention deletes a completed file but keeps its row (location 'deleted'): not stored
    await api.client.app[REPO].update_upload(done.rsplit("/", 1)[1], location="deleted")
    assert await usage(api) == 0
    listed = {u["username"]: u for u in (await api.get_json("/api/users", "root"))["users"]}
    assert listed["alice"]["usage_bytes"] == 0


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
async def test_two_creations_at_once_never_share_the_room_left(api, protocol):
    await patch_user(api, "alice", {"quota_bytes": 10_000})
    if protocol == "tus":
        hdrs = api.tus(**{"Upload-Length": "6000"})
    else:
        hdrs = {
            **api.auth(),
            "Upload-Draft-Interop-Version": "8",
            "Upload-Complete": "?0",
            "Upload-Length": "6000",
        }
    responses = await asyncio.gather(*(api.client.post("/files/", headers=hdrs) for _ in range(4)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 413, 413, 413], [(r.status, await r.text()) for r in responses]


class _Repo:
    """Reservations' two queries: nobody has uploads in progress; alice's quota is 1000."""

    async def reserved_by_owner(self, since):
        return {}

    async def quota_standings(self):
        return {1: ("alice", 1000, 0, 0)}


class _Store:
    def free_space(self) -> int:
        return 10**12


async def test_a_body_of_unknown_length_keeps_the_blocks_that_fit():
    reservations = Reservations(_Repo(), _Store(), idle_timeout=60, user_share=1.0)  # type: ignore[arg-type]

    async def blocks():
        for _ in range(5):
            yield b"x" * 300

    passed = []
    with pytest.raises(errors.ServiceError) as refusal:
        async with reservations.claim(1, 0) as claim:
            async for block in claim.metered(blocks(), step=8 * 1024 * 1024):
                passed.append(block)
    assert refusal.value.spec is errors.QUOTA_EXCEEDED
    assert sum(map(len, passed)) == 900  # the quota's last 100 bytes do not hold a fourth block
    # the fourth block passes the claim by 200 bytes, and the quota has none left
    refused(413, refusal.value.message, "alice", 1000, 200)


def test_sizes_name_bytes_too():
    assert quotas.size(999) == "999 bytes"
    assert quotas.size(10 * 1024**3 + 512 * 1024**2) == "10.50 GiB (11274289152 bytes)"
