"""POST /api/batches/upload-chunk: the existing frontend's API, exact shapes and messages."""

import asyncio
import hashlib
import os

import aiohttp
import pytest

MB = 1024 * 1024


def form(chunk: bytes | None, chunk_first: bool = True, **fields) -> aiohttp.FormData:
    data = aiohttp.FormData()
    if chunk is not None and chunk_first:
        data.add_field("chunk", chunk, filename="blob", content_type="application/octet-stream")
    for key, value in fields.items():
        if value is not None:
            data.add_field(key, str(value))
    if chunk is not None and not chunk_first:
        data.add_field("chunk", chunk, filename="blob", content_type="application/octet-stream")
    return data


async def send(api, chunk, user="alice", status=200, **fields):
    resp = await api.client.post(
        "/api/batches/upload-chunk", data=form(chunk, **fields), headers=api.auth(user)
    )
    body = await resp.json()
    assert resp.status == status, body
    return body


async def upload_in_chunks(api, data: bytes, size: int, chunk_first=True, order=None, **kind) -> dict:
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    kind = kind or {"upload_type": "zip_with_qr"}
    first = await send(
        api,
        chunks[0],
        chunk_first=chunk_first,
        chunk_index=0,
        total_chunks=len(chunks),
        filename="exam.zip",
        is_final_chunk=str(len(chunks) == 1).lower(),
        **kind,
    )
    last = first
    for i in order or range(1, len(chunks)):
        last = await send(
            api,
            chunks[i],
            chunk_first=chunk_first,
            chunk_index=i,
            total_chunks=len(chunks),
            filename="exam.zip",
            upload_id=first["upload_id"],
            is_final_chunk=str(i == len(chunks) - 1).lower(),
            **kind,
        )
    return last


async def test_small_file_as_one_chunk(api):
    data = os.urandom(1000)
    body = await upload_in_chunks(api, data, 1000)
    assert body == {
        "upload_id": body["upload_id"],
        "chunk_index": 0,
        "chunks_received": 1,
        "total_chunks": 1,
        "is_complete": True,
        "batch_id": body["batch_id"],
        "status": "uploaded",
        "message": "Batch uploaded successfully",
    }
    batch = await api.batch(body["batch_id"])
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    assert batch["filename"] == "exam.zip"


@pytest.mark.parametrize("chunk_first", [True, False])
async def test_four_chunks_in_order(api, chunk_first, caplog):
    caplog.set_level("INFO", logger="omr_tus")
    data = os.urandom(3 * MB + 123)
    size = MB
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    first = await send(
        api,
        chunks[0],
        chunk_first=chunk_first,
        chunk_index=0,
        total_chunks=4,
        filename="big.zip",
        upload_type="zip_with_qr",
        is_final_chunk="false",
    )
    assert first == {
        "upload_id": first["upload_id"],
        "chunk_index": 0,
        "chunks_received": 1,
        "total_chunks": 4,
        "is_complete": False,
        "message": "Chunk 1/4 received",
    }
    for i in (1, 2):
        body = await send(
            api,
            chunks[i],
            chunk_first=chunk_first,
            chunk_index=i,
            total_chunks=4,
            filename="big.zip",
            upload_type="zip_with_qr",
            upload_id=first["upload_id"],
            is_final_chunk="false",
        )
        assert body["message"] == f"Chunk {i + 1}/4 received" and body["chunks_received"] == i + 1
    last = await send(
        api,
        chunks[3],
        chunk_first=chunk_first,
        chunk_index=3,
        total_chunks=4,
        filename="big.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
        is_final_chunk="true",
    )
    assert last["is_complete"] is True and last["chunks_received"] == 4 and last["status"] == "uploaded"
    batch = await api.get_json(f"/api/batches?upload_id={first['upload_id']}")
    assert batch["batches"][0]["batch_id"] == last["batch_id"]
    assert batch["batches"][0]["size"] == len(data)
    assert (await api.batch(last["batch_id"]))["sha256"] == hashlib.sha256(data).hexdigest()
    text = caplog.text
    for line in (
        "Saved chunk 1/4 (1.00MB)",
        "All 4 chunks received, reassembling...",
        "Reassembly complete - 3.00MB total",
        "All chunks received, triggering batch processing",
        "Cleaned up temp directory",
    ):
        assert f"Upload {first['upload_id']}: {line}" in text


async def test_out_of_order_and_retried_chunks(api):
    data = os.urandom(5 * 1000)
    body = await upload_in_chunks(api, data, 1000, order=[3, 1, 3, 2, 1])
    assert body["chunks_received"] == 4 and body["is_complete"] is False
    body = await send(
        api,
        data[4000:],
        chunk_index=4,
        total_chunks=5,
        filename="x.zip",
        upload_type="zip_with_qr",
        upload_id=body["upload_id"],
        is_final_chunk="true",
    )
    assert body["is_complete"] and body["chunks_received"] == 5
    retry = await send(
        api,
        data[4000:],
        chunk_index=4,
        total_chunks=5,
        filename="x.zip",
        upload_type="zip_with_qr",
        upload_id=body["upload_id"],
        is_final_chunk="true",
    )
    assert retry["is_complete"] and retry["batch_id"] == body["batch_id"] and retry["chunks_received"] == 5
    assert (await api.batch(body["batch_id"]))["sha256"] == hashlib.sha256(data).hexdigest()


async def test_parallel_chunks(api):
    data = os.urandom(8 * 100_000)
    chunks = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    first = await send(
        api, chunks[0], chunk_index=0, total_chunks=8, filename="p.zip", upload_type="zip_with_qr"
    )
    results = await asyncio.gather(
        *(
            send(
                api,
                chunks[i],
                chunk_index=i,
                total_chunks=8,
                filename="p.zip",
                upload_type="zip_with_qr",
                upload_id=first["upload_id"],
            )
            for i in [1, 2, 3, 4, 5, 6, 7, 5, 6]
        )
    )
    complete = [r for r in results if r["is_complete"]]
    assert complete and len({r["batch_id"] for r in complete}) == 1
    assert (await api.batch(complete[0]["batch_id"]))["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    "fields,status,detail",
    [
        (
            dict(chunk_index=5, total_chunks=4, filename="a.zip", upload_type="zip_with_qr"),
            400,
            "Invalid chunk_index 5 (total: 4)",
        ),
        (dict(chunk_index=0, total_chunks=1, filename="a.zip"), 400, "upload_type is required"),
        (
            dict(chunk_index=0, total_chunks=1, filename="a.zip", upload_type="pdf"),
            400,
            "Invalid upload_type",
        ),
        (
            dict(chunk_index=0, total_chunks=1, filename="a.zip", upload_type="zip_no_qr"),
            400,
            "task_id is required",
        ),
        (
            dict(chunk_index=0, total_chunks=1, filename="a.zip", upload_type="images"),
            400,
            "task_id is required",
        ),
        (
            dict(chunk_index=0, total_chunks=1, filename="a.zip", upload_type="images", task_id="12ab"),
            400,
            "exactly 8 digits",
        ),
        (dict(chunk_index=0, total_chunks=1, upload_type="zip_with_qr"), 400, "filename is required"),
        (
            dict(chunk_index=1, total_chunks=2, filename="a.zip", upload_type="zip_with_qr"),
            400,
            "upload_id is required when chunk_index > 0",
        ),
        (
            dict(chunk_index="x", total_chunks=2, filename="a.zip", upload_type="zip_with_qr"),
            400,
            "chunk_index must be an integer",
        ),
        (
            dict(chunk_index=0, total_chunks=0, filename="a.zip", upload_type="zip_with_qr"),
            400,
            "total_chunks must be at least 1",
        ),
        (
            dict(chunk_index=0, total_chunks=10**12, filename="a.zip", upload_type="zip_with_qr"),
            400,
            "maximum size",
        ),
        (
            dict(
                chunk_index=1, total_chunks=2, filename="a.zip", upload_type="zip_with_qr", upload_id="nope"
            ),
            404,
            "Upload nope not found. Please restart upload.",
        ),
    ],
)
async def test_refusals(api, fields, status, detail):
    body = await send(api, b"abc", status=status, **fields)
    assert detail in body["detail"]


@pytest.mark.parametrize("types", [("zip_with_qr", None), ("zip_no_qr", "11600111"), ("images", "11600111")])
async def test_upload_types(api, types):
    kind, task = types
    await api.register_task("11600111")
    body = await upload_in_chunks(api, b"x" * 10, 4, upload_type=kind, task_id=task)
    batch = await api.get_json(f"/api/batches/{body['batch_id']}")
    assert (batch["upload_type"], batch["task_id"]) == types


async def test_other_users_upload_id_is_404(api):
    first = await send(
        api, b"a" * 10, chunk_index=0, total_chunks=2, filename="a.zip", upload_type="zip_with_qr"
    )
    body = await send(
        api,
        b"b",
        user="bob",
        status=404,
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert body["detail"] == f"Upload {first['upload_id']} not found. Please restart upload."


async def test_total_chunks_mismatch_and_wrong_chunk_size(api):
    first = await send(
        api, b"a" * 10, chunk_index=0, total_chunks=3, filename="a.zip", upload_type="zip_with_qr"
    )
    body = await send(
        api,
        b"b" * 10,
        status=400,
        chunk_index=1,
        total_chunks=4,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert "does not match" in body["detail"]
    body = await send(
        api,
        b"b" * 5,
        status=400,
        chunk_index=1,
        total_chunks=3,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert "every chunk but the last must have 10 bytes" in body["detail"]
    body = await send(
        api,
        b"b" * 11,
        status=400,
        chunk_index=2,
        total_chunks=3,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert "larger than chunk 0" in body["detail"]
    ok = await send(
        api,
        b"b" * 10,
        chunk_index=1,
        total_chunks=3,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert ok["chunks_received"] == 2


async def test_declared_oversized_request_is_413_before_its_body(api):
    """Only headers are sent: the answer cannot have waited for 150 MB of body."""
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    writer.write(
        (
            f"POST /api/batches/upload-chunk HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {api.tokens['alice']}\r\n"
            "Content-Type: multipart/form-data; boundary=zzz\r\nContent-Length: 150000000\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert body == b'{"detail": "Chunk size 150000000 exceeds maximum 104857600"}'


async def test_oversized_chunk_streamed_is_413(api, monkeypatch):
    from omr_tus.http.keys import SERVICE

    monkeypatch.setattr(api.client.app[SERVICE], "max_chunk", 1000)
    body = await send(
        api,
        b"x" * 5000,
        status=413,
        chunk_index=0,
        total_chunks=1,
        filename="a.zip",
        upload_type="zip_with_qr",
    )
    assert body["detail"] == "Chunk size 1001 exceeds maximum 1000"
    body = await send(
        api,
        b"x" * 5000,
        chunk_first=False,
        status=413,
        chunk_index=0,
        total_chunks=1,
        filename="a.zip",
        upload_type="zip_with_qr",
    )
    assert body["detail"] == "Chunk size 1001 exceeds maximum 1000"


async def test_direct_upload(api):
    await api.register_task("11600111")
    data = os.urandom(5000)
    form_data = aiohttp.FormData()
    form_data.add_field("file", data, filename="direct.zip", content_type="application/zip")
    form_data.add_field("upload_type", "zip_no_qr")
    form_data.add_field("task_id", "11600111")
    resp = await api.client.post("/api/batches/upload", data=form_data, headers=api.auth())
    body = await resp.json()
    assert resp.status == 201, body
    assert body["filename"] == "direct.zip" and body["size"] == 5000 and body["task_id"] == "11600111"
    assert (await api.batch(body["batch_id"]))["sha256"] == hashlib.sha256(data).hexdigest()
    bad = aiohttp.FormData()
    bad.add_field("file", data, filename="direct.zip")
    bad.add_field("upload_type", "images")
    resp = await api.client.post("/api/batches/upload", data=bad, headers=api.auth())
    assert resp.status == 400 and "task_id is required" in (await resp.json())["detail"]


async def test_original_note_197mb_in_four_50mb_chunks(api):
    """Test case 2 of the original note: 197 MB as 3 chunks of 50 MB and one of 47 MB."""
    block = os.urandom(1_000_000)
    data = block * 197
    body = await upload_in_chunks(api, data, 50_000_000, chunk_first=False)
    assert body["is_complete"] and body["chunks_received"] == 4
    batch = await api.batch(body["batch_id"])
    assert batch["size"] == 197_000_000
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()


async def test_chunk_that_fails_midway_is_retried(api):
    """Test case 3 of the original note: the connection drops inside chunk 2, the client retries it."""
    data = os.urandom(4 * 100_000)
    chunks = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    first = await send(
        api,
        chunks[0],
        chunk_first=False,
        chunk_index=0,
        total_chunks=4,
        filename="r.zip",
        upload_type="zip_with_qr",
    )
    await send(
        api,
        chunks[1],
        chunk_first=False,
        chunk_index=1,
        total_chunks=4,
        filename="r.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    fields = {
        "chunk_index": 2,
        "total_chunks": 4,
        "filename": "r.zip",
        "upload_type": "zip_with_qr",
        "upload_id": first["upload_id"],
    }
    head = "".join(
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()
    )
    head += '--b\r\nContent-Disposition: form-data; name="chunk"; filename="blob"\r\n\r\n'
    total = len(head) + len(chunks[2]) + len("\r\n--b--\r\n")
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    writer.write(
        (
            f"POST /api/batches/upload-chunk HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.tokens['alice']}"
            f"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {total}\r\n\r\n" + head
        ).encode()
        + chunks[2][:40_000]
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()  # the network fails in the middle of chunk 2
    retried = await send(api, chunks[2], chunk_first=False, status=200, **fields)
    assert retried["chunks_received"] == 3 and retried["is_complete"] is False
    last = await send(
        api,
        chunks[3],
        chunk_first=False,
        chunk_index=3,
        total_chunks=4,
        filename="r.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
        is_final_chunk="true",
    )
    assert last["is_complete"] and last["chunks_received"] == 4
    assert (await api.batch(last["batch_id"]))["sha256"] == hashlib.sha256(data).hexdigest()


async def test_a_spooled_chunk_gone_before_it_is_placed_completes_nothing(api):
    """The sweeper (or anything) removed a chunk spooled before its form fields: the request
    fails with 503 rather than recording a chunk of 0 bytes that completes a short file."""
    from omr_tus.http.keys import SERVICE

    core = api.client.app[SERVICE]
    real_spool = core.spool

    async def spool_then_swept(blocks):
        chunk = await real_spool(blocks)
        await core.discard(chunk)
        return chunk

    data = os.urandom(200_000)
    half = len(data) // 2
    first = await send(
        api, data[:half], chunk_index=0, total_chunks=2, filename="a.zip", upload_type="zip_with_qr"
    )
    core.spool = spool_then_swept
    form = aiohttp.FormData()
    form.add_field("chunk", data[half:], filename="blob", content_type="application/octet-stream")
    for key, value in dict(
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    ).items():
        form.add_field(key, str(value))
    resp = await api.client.post("/api/batches/upload-chunk", headers=api.auth(), data=form)
    assert resp.status == 503, await resp.text()
    core.spool = real_spool
    retry = await send(
        api,
        data[half:],
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert retry["is_complete"]
