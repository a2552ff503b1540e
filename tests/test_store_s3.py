"""The S3 store against a real S3 server (SeaweedFS on loopback): tusd's layout (one multipart
upload, parts of at least 5 MiB, a smaller tail as its own object), the offset derived from
the bucket by any node, termination, and whole uploads through the API and a worker."""

from __future__ import annotations

import hashlib
import os

import pytest

from omr_tus.http.keys import STORE
from omr_tus.store import WriteProgress
from omr_tus.store.s3 import MIN_PART, S3Settings, S3Store

from .conftest import make_settings, users_and_tokens
from .test_omr_pipeline import TASK, process, register_task, worker, zipped

MiB = 1024 * 1024


def s3_settings(overrides: dict, part_size: int = MIN_PART) -> S3Settings:
    return S3Settings(
        bucket=overrides["s3_bucket"],
        prefix=overrides["s3_prefix"],
        endpoint=overrides["s3_endpoint"],
        access_key=overrides["s3_access_key"],
        secret_key=overrides["s3_secret_key"],
        part_size=part_size,
    )


@pytest.fixture
async def open_store(s3_overrides, tmp_path):
    """`await open_store()`: an S3Store on the test's prefix; each call is another 'node'."""
    stores: list[S3Store] = []

    async def make(part_size: int = MIN_PART) -> S3Store:
        store = await S3Store(s3_settings(s3_overrides, part_size), tmp_path / f"spool{len(stores)}").open()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def blocks_of(data: bytes, size: int = 64 * 1024, fail_after: int | None = None):
    for i in range(0, len(data), size):
        if fail_after is not None and i >= fail_after:
            raise ConnectionResetError("client went away")
        yield data[i : i + size]


async def read_all(store: S3Store, upload_id: str) -> bytes:
    out = bytearray()
    async with store.read(upload_id) as (size, chunks):
        async for chunk in chunks:
            out += chunk
    assert size == len(out)
    return bytes(out)


async def multipart_uploads(store: S3Store, upload_id: str) -> list:
    listed = await store.client.list_multipart_uploads(
        Bucket=store.config.bucket, Prefix=store.key(upload_id)
    )
    return listed.get("Uploads", [])


# Requests (body sizes, in order) on a store with part_size; then what the bucket must hold:
# part sizes and tail bytes.
LAYOUTS = [
    pytest.param(5 * MiB, [3 * MiB], [], 3 * MiB, id="small-request-is-a-tail-object"),
    pytest.param(5 * MiB, [3 * MiB, 3 * MiB], [5 * MiB], 1 * MiB, id="tail-taken-back-into-a-part"),
    pytest.param(8 * MiB, [3 * MiB, 3 * MiB], [6 * MiB], 0, id="a-rest-of-5-mib-or-more-is-a-part"),
    pytest.param(8 * MiB, [22 * MiB], [8 * MiB, 8 * MiB, 6 * MiB], 0, id="full-parts-then-the-rest"),
    pytest.param(5 * MiB, [10 * MiB + 100], [5 * MiB, 5 * MiB], 100, id="a-tiny-rest-stays-a-tail"),
    pytest.param(5 * MiB, [1, 2, 3], [], 6, id="byte-sized-requests"),
]


@pytest.mark.parametrize("part_size, requests, parts, tail", LAYOUTS)
async def test_layout_follows_tusd(open_store, part_size, requests, parts, tail):
    store = await open_store(part_size)
    data = os.urandom(sum(requests))
    await store.create("layout")
    offset = 0
    for size in requests:
        progress = WriteProgress()
        assert await store.write("layout", offset, blocks_of(data[offset : offset + size]), progress) == size
        offset += size
    other_node = await open_store(part_size)
    assert await other_node.size("layout") == len(data)
    state = other_node._uploads["layout"]
    assert [p[2] for p in state.parts] == parts and state.tail == tail
    await other_node.finish("layout")
    assert await read_all(store, "layout") == data
    assert await multipart_uploads(store, "layout") == []
    for suffix in (".info", ".part"):
        assert await store._object_size("layout", suffix) is None


async def test_another_node_continues_where_the_first_stopped(open_store):
    first, second = await open_store(), await open_store()
    data = os.urandom(9 * MiB + 7)
    await first.create("relay")
    await first.write("relay", 0, blocks_of(data[: 4 * MiB]), WriteProgress())
    await second.write("relay", 4 * MiB, blocks_of(data[4 * MiB : 8 * MiB]), WriteProgress())
    # the first node's memory of the upload is stale: it must ask the bucket
    await first.write("relay", 8 * MiB, blocks_of(data[8 * MiB :]), WriteProgress())
    with pytest.raises(ValueError, match="holds"):
        await second.write("relay", 4 * MiB, blocks_of(b"x"), WriteProgress())
    await second.finish("relay")
    assert hashlib.sha256(await read_all(first, "relay")).digest() == hashlib.sha256(data).digest()


async def test_a_broken_body_keeps_what_arrived(open_store):
    store = await open_store()
    data = os.urandom(8 * MiB)
    await store.create("broken")
    progress = WriteProgress()
    with pytest.raises(ConnectionResetError):
        await store.write("broken", 0, blocks_of(data, fail_after=7 * MiB), progress)
    assert progress.written == 7 * MiB == await store.size("broken")
    await store.write("broken", 7 * MiB, blocks_of(data[7 * MiB :]), WriteProgress())
    await store.finish("broken")
    assert await read_all(store, "broken") == data


async def test_empty_upload_and_termination(open_store):
    store = await open_store()
    await store.create("empty")
    await store.finish("empty")
    assert await read_all(store, "empty") == b""
    await store.create("gone")
    await store.write("gone", 0, blocks_of(os.urandom(6 * MiB)), WriteProgress())
    await store.write("gone", 6 * MiB, blocks_of(b"tail"), WriteProgress())
    await store.delete("gone")
    assert await multipart_uploads(store, "gone") == []
    assert await (await open_store()).size("gone") == 0
    await store.delete("gone")  # again: no error


async def test_download_to_a_local_file(open_store, tmp_path):
    store = await open_store()
    data = os.urandom(5 * MiB + 3)
    await store.create("file")
    await store.write("file", 0, blocks_of(data), WriteProgress())
    await store.finish("file")
    await store.download("file", tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == data


# -- through the API ----------------------------------------------------------------


@pytest.fixture
async def s3_api(aiohttp_client, tmp_path, database_url, s3_overrides):
    from omr_tus.app import create_app

    settings = make_settings(tmp_path, database_url, **s3_overrides, s3_part_size=str(MIN_PART))
    return await users_and_tokens(await aiohttp_client(create_app(settings)))


async def test_tus_upload_on_s3_resumes_and_downloads(s3_api):
    api = s3_api
    data = os.urandom(13 * MiB + 5)
    resp = await api.client.options("/files/")
    assert "checksum" not in resp.headers["Tus-Extension"]  # parts cannot drop bytes again
    assert "concatenation" not in resp.headers["Tus-Extension"]
    await api.register_task(TASK)
    path = await api.create(len(data), {"filename": "big.bin", "upload_type": "images", "task_id": TASK})
    offset = 0
    for size in (2 * MiB, 6 * MiB, 1, 5 * MiB + 4):
        resp = await api.patch(path, offset, data[offset : offset + size])
        assert resp.status == 204, await resp.text()
        offset += size
        head = await api.head(path)
        assert int(head.headers["Upload-Offset"]) == offset
    resp = await api.patch(path, 0, b"x")
    assert resp.status == 409 and resp.headers["Upload-Offset"] == str(offset)
    resp = await api.patch(path, offset, data[offset:])
    assert resp.status == 204
    batch = await api.batch(resp.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    resp = await api.client.get(path, headers=api.auth())
    assert resp.status == 200 and await resp.read() == data
    resp = await api.client.get("/readyz")
    assert (await resp.json())["checks"]["store"] == "ok"


async def test_partial_uploads_are_refused_where_they_cannot_be_joined(s3_api):
    """The page sends big files as parts only where Tus-Extension offers concatenation; a
    client that sends parts anyway is told why, before a byte."""
    resp = await s3_api.client.post(
        "/files/", headers=s3_api.tus(**{"Upload-Concat": "partial", "Upload-Length": "10"})
    )
    assert resp.status == 400 and "concatenation" in await resp.text()


async def test_terminated_upload_leaves_nothing_in_the_bucket(s3_api):
    api = s3_api
    path = await api.create(10 * MiB, {"filename": "x.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(path, 0, os.urandom(6 * MiB))).status == 204
    resp = await api.client.delete(path, headers=api.tus())
    assert resp.status == 204
    store = api.client.app[STORE]
    assert await multipart_uploads(store, path.rsplit("/", 1)[1]) == []


async def test_a_batch_on_s3_is_read_by_a_worker(s3_api):
    import numpy as np

    from omr_tus.omr.simulate import EASY, simulate_sheet
    from omr_tus.omr.template import Template

    from .test_omr_pipeline import TEMPLATE

    api = s3_api
    await register_task(api)
    sheets = [
        simulate_sheet(Template.parse(TEMPLATE), np.random.default_rng(seed), EASY, task_id=TASK)
        for seed in (3, 4)
    ]
    data = zipped(sheets)
    path = await api.create(len(data), {"filename": "exam.zip", "upload_type": "zip_with_qr"})
    resp = await api.patch(path, 0, data)
    batch_id = resp.headers["Batch-Id"]
    await api.batch(batch_id)
    progress = await process(api, batch_id, [worker(api)])
    assert progress["status"] == "completed" and progress["processed_sheets"] == 2


async def test_legacy_chunks_on_s3_are_parts_in_any_order(s3_api):
    from .test_legacy_chunks import send, upload_in_chunks

    api = s3_api
    data = os.urandom(3 * MIN_PART + 12345)
    last = await upload_in_chunks(api, data, MIN_PART, order=[3, 1, 2])
    assert last["is_complete"]
    batch = await api.batch(last["batch_id"])
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    body = await send(
        api,
        os.urandom(1000),
        status=400,
        chunk_index=0,
        total_chunks=3,
        filename="x.zip",
        upload_type="zip_with_qr",
    )
    assert "at least 5242880 bytes" in body["detail"]
    direct = await upload_in_chunks(api, b"one small file", 100)  # a single chunk may be any size
    assert (await api.batch(direct["batch_id"]))["sha256"] == hashlib.sha256(b"one small file").hexdigest()


async def test_a_failing_bucket_answers_503_and_the_upload_resumes(s3_api, monkeypatch):
    from botocore.exceptions import ClientError

    api = s3_api
    store = api.client.app[STORE]
    data = os.urandom(12 * MiB)
    path = await api.create(len(data), {"filename": "x.zip", "upload_type": "zip_with_qr"})
    assert (await api.patch(path, 0, data[: 6 * MiB])).status == 204  # a 5 MiB part and a 1 MiB tail

    async def refuse(**_kwargs):
        raise ClientError({"Error": {"Code": "InternalError", "Message": "disk on fire"}}, "UploadPart")

    monkeypatch.setattr(store.client, "upload_part", refuse)
    resp = await api.patch(path, 6 * MiB, data[6 * MiB :])
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    assert "HEAD" in await resp.text()
    monkeypatch.undo()
    offset = int((await api.head(path)).headers["Upload-Offset"])
    assert 5 * MiB <= offset <= 6 * MiB  # what the bucket holds, never more
    resp = await api.patch(path, offset, data[offset:])
    assert resp.status == 204
    assert (await api.batch(resp.headers["Batch-Id"]))["sha256"] == hashlib.sha256(data).hexdigest()


async def test_reading_a_missing_object_is_file_not_found(open_store):
    """The store contract (as a local file's): a completed upload whose object is gone reads as
    FileNotFoundError, so the archiver records it lost instead of retrying for ever."""
    store = await open_store()
    with pytest.raises(FileNotFoundError):
        async with store.read("never-stored"):
            pass
