"""tus concatenation and concatenation-unfinished."""

import hashlib
import os
from urllib.parse import urlsplit

import pytest

from omr_tus.http.keys import REPO, SERVICE, STORE

from .helpers import KIND, encode_metadata, eventually


async def partial(api, data: bytes | None, length: int, user="alice") -> str:
    path = await api.create(length, user=user, **{"Upload-Concat": "partial"})
    if data is not None:
        assert (await api.patch(path, 0, data, user=user)).status == 204
    return path


async def create_final(api, urls: str, meta=None, status=201, user="alice", **extra):
    headers = api.tus(user, **{"Upload-Concat": f"final;{urls}", **extra})
    if meta:
        headers["Upload-Metadata"] = encode_metadata({**KIND, **meta})
    resp = await api.client.post("/files/", headers=headers)
    assert resp.status == status, await resp.text()
    return resp


async def batch_of(api, final_path: str) -> dict:
    upload_id = final_path.rsplit("/", 1)[1]
    batches = await eventually(
        lambda: api.get_json(f"/api/batches?upload_id={upload_id}"),
        lambda listed: listed["batches"] and listed["batches"][0]["sha256"],
    )
    return batches["batches"][0]


@pytest.mark.parametrize("absolute", [False, True])
async def test_final_of_complete_partials(api, absolute):
    await api.register_task("11600111")
    parts = [os.urandom(1000), os.urandom(1), os.urandom(70_000)]
    paths = [await partial(api, p, len(p)) for p in parts]
    head = await api.head(paths[0])
    assert head.headers["Upload-Concat"] == "partial"
    base = str(api.client.make_url("")).rstrip("/") if absolute else ""
    resp = await create_final(
        api,
        " ".join(base + p for p in paths),
        meta={"filename": "whole.zip", "upload_type": "zip_no_qr", "task_id": "11600111"},
    )
    assert "Batch-Id" in resp.headers
    final = resp.headers["Location"].split("://", 1)[1].split("/", 1)[1]
    final = "/" + final
    batch = await batch_of(api, final)
    data = b"".join(parts)
    assert batch["sha256"] == hashlib.sha256(data).hexdigest() and batch["size"] == len(data)
    assert (batch["filename"], batch["upload_type"], batch["task_id"]) == (
        "whole.zip",
        "zip_no_qr",
        "11600111",
    )
    head = await api.head(final)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(data))
    assert head.headers["Upload-Concat"].startswith("final;http")
    resp = await api.client.get(final, headers=api.auth())
    assert await resp.read() == data
    # the parts, copied into the final, give their space back (after the answer)
    app, part_ids = api.client.app, [p.rsplit("/", 1)[1] for p in paths]

    async def parts_left() -> list[tuple[bool, str]]:
        return [(app[STORE].path(i).exists(), (await app[REPO].upload(i)).location) for i in part_ids]

    await eventually(
        parts_left, lambda left: left == [(False, "consumed")] * 3, what="the parts to be deleted"
    )


async def test_final_before_partials_are_complete(api):
    a, b = os.urandom(5000), os.urandom(3000)
    pa = await partial(api, a[:100], len(a))
    pb = await partial(api, None, len(b))
    resp = await create_final(api, f"{pa} {pb}", meta={"filename": "late.zip"})
    assert "Batch-Id" not in resp.headers
    final = "/files/" + resp.headers["Location"].rsplit("/", 1)[1]
    head = await api.head(final)
    assert head.status == 200
    assert "Upload-Offset" not in head.headers
    assert head.headers["Upload-Length"] == "8000"
    assert (await api.patch(final, 0, b"x")).status == 403
    assert (await api.patch(pb, 0, b)).status == 204
    assert (await api.patch(pa, 100, a[100:])).status == 204
    batch = await batch_of(api, final)
    assert batch is not None and batch["sha256"] == hashlib.sha256(a + b).hexdigest()
    assert (await api.head(final)).headers["Upload-Offset"] == "8000"


async def test_partials_of_unknown_length(api):
    pa = await api.create(None, **{"Upload-Concat": "partial"})
    resp = await create_final(api, pa)
    final = "/files/" + resp.headers["Location"].rsplit("/", 1)[1]
    assert "Upload-Length" not in (await api.head(final)).headers
    assert (await api.patch(pa, 0, b"abc", **{"Upload-Length": "3"})).status == 204
    batch = await batch_of(api, final)
    assert batch["size"] == 3


@pytest.mark.parametrize(
    "make,status,text",
    [
        (lambda p, q: f"final;{p}", 201, ""),
        (lambda p, q: "final;", 400, "at least one partial"),
        (lambda p, q: f"final;{q}", 400, "was not created with Upload-Concat: partial"),
        (lambda p, q: "final;/files/" + "0" * 32, 400, "not found"),
        (lambda p, q: "final;/elsewhere/abc", 400, "not an upload of this server"),
        (lambda p, q: "something", 400, "must be 'partial' or 'final;"),
    ],
)
async def test_final_refusals(api, make, status, text):
    p = await partial(api, b"ab", 2)
    q = await api.create(2)
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Concat": make(p, q)}))
    assert resp.status == status
    assert text in await resp.text()


async def test_final_refusals_for_length_and_owner(api):
    p = await partial(api, b"ab", 2)
    await create_final(api, p, status=400, **{"Upload-Length": "2"})
    resp = await create_final(api, p, status=400, user="bob")
    assert "not found" in await resp.text()
    await create_final(api, p, meta={"upload_type": "images"}, status=400)  # the final carries the task


async def test_partial_completion_creates_no_batch(api):
    p = await partial(api, b"abc", 3)
    resp = await api.patch(p, 3, b"")
    assert "Batch-Id" not in resp.headers
    assert (await api.get_json("/api/batches"))["total"] == 0


async def test_options_advertises_concatenation(client):
    resp = await client.options("/files/")
    extensions = resp.headers["Tus-Extension"].split(",")
    assert "concatenation" in extensions and "concatenation-unfinished" in extensions


async def test_a_partial_whose_bytes_are_gone_is_never_assembled(api, tmp_path):
    """A reboot wiped the RAM disk between a partial's completion and the final's creation."""
    first, second = os.urandom(1000), os.urandom(2000)
    a, b = await partial(api, first, len(first)), await partial(api, second, len(second))
    (tmp_path / "store" / b.rsplit("/", 1)[1]).unlink()
    final = (await create_final(api, f"{a} {b}", meta={"upload_type": "zip_with_qr"})).headers["Location"]
    final_id = final.rsplit("/", 1)[1]
    assert (await api.get_json(f"/api/batches?upload_id={final_id}"))[
        "batches"
    ] == []  # no batch of 1000 bytes
    head = await api.head(b)
    assert head.headers["Upload-Offset"] == "0"  # what is really held


async def test_the_final_sent_again_answers_the_same_final(api):
    """A client whose final's answer was lost (or a reloaded page) sends the same creation again:
    it gets that final and its batch, not a 400 (found by review)."""
    paths = [await partial(api, b"ab", 2), await partial(api, b"cd", 2)]
    first = await create_final(api, " ".join(paths), meta={"filename": "x.zip"})
    again = await create_final(api, " ".join(paths), meta={"filename": "x.zip"})
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Batch-Id"] == first.headers["Batch-Id"]
    await create_final(api, " ".join(reversed(paths)), status=400)  # another order: another final
    await create_final(api, paths[0], status=400)  # a subset too


async def test_a_part_removed_while_copied_leaves_the_final_incomplete(api, monkeypatch):
    """Never a completed final with a hole (found by review: a DELETE of a part in the middle)."""
    store = api.client.app[STORE]
    paths = [await partial(api, os.urandom(1000), 1000) for _ in range(3)]
    copy_into = store.copy_into

    async def removed_meanwhile(src, dst, at):
        if src == paths[1].rsplit("/", 1)[1]:
            assert (await api.client.delete(paths[1], headers=api.tus())).status == 204
        return await copy_into(src, dst, at)

    monkeypatch.setattr(store, "copy_into", removed_meanwhile)
    resp = await create_final(api, " ".join(paths), meta={"filename": "x.zip"})
    assert "Batch-Id" not in resp.headers
    head = await api.head(urlsplit(resp.headers["Location"]).path)
    assert "Upload-Offset" not in head.headers and "Batch-Id" not in head.headers  # not complete


async def test_parts_a_stop_left_holding_bytes_are_freed_at_start(api):
    """The parts of a complete final are freed after its answer; a stop before that leaves them
    on the store, and the next start frees them (found by review)."""
    paths = [await partial(api, b"x" * 500, 500), await partial(api, b"y" * 500, 500)]
    await create_final(api, " ".join(paths), meta={"filename": "x.zip"})
    store, repo = api.client.app[STORE], api.client.app[REPO]
    ids = [path.rsplit("/", 1)[1] for path in paths]
    await eventually(lambda: not any(store.path(i).exists() for i in ids), what="the parts freed")
    for part_id in ids:  # as a stop right after the final's answer leaves them
        store.path(part_id).write_bytes(b"z" * 500)
        await repo.update_upload(part_id, location="store")
    await api.client.app[SERVICE].complete_unfinished()
    for path in paths:
        part_id = path.rsplit("/", 1)[1]
        assert not store.path(part_id).exists()
        assert (await repo.upload(part_id)).location == "consumed"
