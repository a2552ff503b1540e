"""The benchmark client: the same aiohttp tus client for every server.

Bodies are slices (memoryviews) of one pre-built random buffer, streamed by an async
generator in PIECE-sized pieces: no per-request allocation, and the client's own buffer
stays bounded. File content at offset o is DATA[o % PERIOD], with a PERIOD that no
chunk size divides, so a block written at a wrong offset changes the sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from urllib.parse import urljoin

import aiohttp

MiB = 1024 * 1024
PERIOD = 64 * MiB + 4099
PIECE = 256 * 1024  # bytes handed to the transport per write
TIMEOUT = aiohttp.ClientTimeout(total=600, sock_connect=10)


class Data:
    def __init__(self, max_chunk: int = 50 * MiB):
        buf = os.urandom(PERIOD)
        self.view = memoryview(
            (buf * (2 + max_chunk // PERIOD))[: PERIOD + max_chunk]
        )  # any slice is contiguous
        self.max_chunk = max_chunk
        self._hashes: dict[int, str] = {}

    def slice(self, offset: int, n: int) -> memoryview:
        assert n <= self.max_chunk
        start = offset % PERIOD
        return self.view[start : start + n]

    def sha256(self, total: int) -> str:
        """sha256 of the first `total` bytes of the stream (computed once per size)."""
        if total not in self._hashes:
            h = hashlib.sha256()
            offset = 0
            while offset < total:
                n = min(self.max_chunk, total - offset)
                h.update(self.slice(offset, n))
                offset += n
            self._hashes[total] = h.hexdigest()
        return self._hashes[total]


async def _body(parts, marks: dict):
    """Streams `parts` (bytes / memoryviews) in PIECE-sized slices, without copying them."""
    for part in parts:
        view = memoryview(part)
        for i in range(0, len(view), PIECE):
            yield view[i : i + PIECE]
    marks["last_byte"] = (
        time.perf_counter()
    )  # the transport took the last piece (<= 64 KiB left in user space)


def _payload(parts, marks: dict):
    """A streamed body for large parts, one bytes object (one write) for small ones."""
    if sum(len(p) for p in parts) > PIECE:
        return _body(parts, marks)
    return b"".join(parts)


def session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False), timeout=TIMEOUT, auto_decompress=False
    )


KIND = "upload_type emlwX3dpdGhfcXI="  # Upload-Metadata: upload_type zip_with_qr (omr-tus requires a type)


async def create(sess: aiohttp.ClientSession, base: str, headers: dict, length: int) -> str:
    headers = {**headers, "Upload-Length": str(length), "Upload-Metadata": KIND}
    async with sess.post(base + "/files/", headers=headers) as resp:
        if resp.status != 201:
            raise RuntimeError(f"POST /files/ -> {resp.status}: {(await resp.text())[:300]}")
        await resp.read()
        return urljoin(base + "/files/", resp.headers["Location"])


async def patch(
    sess: aiohttp.ClientSession,
    url: str,
    headers: dict,
    offset: int,
    body: memoryview,
    marks: dict | None = None,
) -> int:
    marks = {} if marks is None else marks
    hdrs = {
        **headers,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(len(body)),
    }
    async with sess.patch(url, headers=hdrs, data=_payload((body,), marks)) as resp:
        marks["response"] = time.perf_counter()
        if resp.status != 204:
            raise RuntimeError(f"PATCH {url} @{offset} -> {resp.status}: {(await resp.text())[:300]}")
        await resp.read()
        new_offset = int(resp.headers["Upload-Offset"])
    if new_offset != offset + len(body):
        raise RuntimeError(f"PATCH {url}: offset {new_offset}, expected {offset + len(body)}")
    return new_offset


async def upload(
    sess: aiohttp.ClientSession,
    base: str,
    headers: dict,
    data: Data,
    total: int,
    chunk: int,
    stop_at: int | None = None,
) -> dict:
    """Create an upload of `total` bytes and send it in `chunk`-sized PATCHes (up to stop_at)."""
    url = await create(sess, base, headers, total)
    offset, marks = 0, {}
    end = total if stop_at is None else stop_at
    patches = 0
    while offset < end:
        n = min(chunk, end - offset)
        marks = {}
        offset = await patch(sess, url, headers, offset, data.slice(offset, n), marks)
        patches += 1
        if patches > 100_000:
            raise RuntimeError("too many PATCH requests")
    return {"url": url, "id": url.rstrip("/").rsplit("/", 1)[-1], "offset": offset, "last_marks": marks}


async def creations(base: str, headers: dict, count: int, concurrency: int) -> float:
    """POST /files/ `count` times from `concurrency` workers; returns creations per second."""
    async with session(concurrency) as sess:
        # Warm up: open the connections and the server's code paths.
        await asyncio.gather(*(create(sess, base, headers, 1024) for _ in range(concurrency)))
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await create(sess, base, headers, 1024)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 600)
        return count / (time.perf_counter() - start)


# -- the legacy chunk API (POST /api/batches/upload-chunk, multipart/form-data) --------------------------
BOUNDARY = "omrbench" + "7d1f0c5e2a9b4e8f"
LEGACY_URL = "/api/batches/upload-chunk"


def _form(fields: dict[str, str], size: int, filename: str) -> tuple[bytes, bytes, dict]:
    """Framing of a form whose last part is the file field `chunk` of `size` bytes: (preamble,
    closing boundary, headers with the exact Content-Length). The chunk itself is sent between
    them as a slice of the data buffer, never copied into one body."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="chunk"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    )
    preamble, closing = head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()
    return (
        preamble,
        closing,
        {
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(preamble) + size + len(closing)),
        },
    )


def _chunk_fields(index: int, total_chunks: int, filename: str, upload_id: str | None, final: bool) -> dict:
    fields = {
        "chunk_index": str(index),
        "total_chunks": str(total_chunks),
        "filename": filename,
        "upload_type": "zip_with_qr",
    }
    if upload_id is not None:
        fields["upload_id"] = upload_id
    fields["is_final_chunk"] = "true" if final else "false"
    return fields


async def legacy_chunk(
    sess: aiohttp.ClientSession,
    base: str,
    headers: dict,
    index: int,
    total_chunks: int,
    body: memoryview,
    upload_id: str | None = None,
    filename: str = "bench.zip",
    marks: dict | None = None,
) -> dict:
    """Sends one chunk; returns the JSON answer (checked)."""
    marks = {} if marks is None else marks
    fields = _chunk_fields(index, total_chunks, filename, upload_id, index == total_chunks - 1)
    preamble, closing, hdrs = _form(fields, len(body), filename)
    async with sess.post(
        base + LEGACY_URL, headers={**headers, **hdrs}, data=_payload((preamble, body, closing), marks)
    ) as resp:
        marks["response"] = time.perf_counter()
        if resp.status != 200:
            raise RuntimeError(f"chunk {index}/{total_chunks} -> {resp.status}: {(await resp.text())[:300]}")
        answer = await resp.json()
    if answer["chunk_index"] != index or answer["is_complete"] != (answer["chunks_received"] == total_chunks):
        raise RuntimeError(f"chunk {index}/{total_chunks}: unexpected answer {answer}")
    return answer


async def legacy_upload(
    sess: aiohttp.ClientSession,
    base: str,
    headers: dict,
    data: Data,
    total: int,
    chunk: int,
    stop_before_last: bool = False,
) -> dict:
    """Sends a `total`-byte file in `chunk`-sized chunks, in order (all but the last one if
    stop_before_last). Returns the upload id, the last answer and the last chunk's marks."""
    total_chunks = -(-total // chunk)
    upload_id, answer, marks = None, {}, {}
    for index in range(total_chunks - 1 if stop_before_last else total_chunks):
        offset = index * chunk
        marks = {}
        answer = await legacy_chunk(
            sess,
            base,
            headers,
            index,
            total_chunks,
            data.slice(offset, min(chunk, total - offset)),
            upload_id,
            marks=marks,
        )
        upload_id = answer["upload_id"]
    if not stop_before_last and not answer.get("batch_id"):
        raise RuntimeError(f"legacy upload of {total_chunks} chunks not complete: {answer}")
    return {"id": upload_id, "total_chunks": total_chunks, "answer": answer, "last_marks": marks}


async def refused_chunk(
    sess: aiohttp.ClientSession, base: str, headers: dict, data: Data, size: int, limit: int
) -> dict:
    """Announces a `size`-byte chunk (exact Content-Length) and streams it until the server answers
    or closes the connection (at most `limit` bytes). Returns the status (None if the connection
    was closed without an answer) and the bytes handed to the transport before that."""
    state = {"sent": 0, "answered": False}
    preamble, closing, hdrs = _form(_chunk_fields(0, 1, "big.zip", None, True), size, "big.zip")

    async def body():
        yield preamble
        offset = 0
        while offset < size and not state["answered"] and state["sent"] < limit:
            piece = data.slice(offset, min(PIECE, size - offset))
            yield piece
            offset += len(piece)
            state["sent"] = offset
        if offset >= size:
            yield closing

    status, detail = None, ""
    t0 = time.perf_counter()
    try:
        async with sess.post(base + LEGACY_URL, headers={**headers, **hdrs}, data=body()) as resp:
            state["answered"] = True
            status, sent = resp.status, state["sent"]
            detail = (await resp.text())[:200]
            resp.close()  # do not send the rest, do not reuse the connection
    except (aiohttp.ClientError, ConnectionError) as exc:
        sent, detail = state["sent"], f"{type(exc).__name__}: {exc}"
    return {"status": status, "sent": sent, "detail": detail, "seconds": time.perf_counter() - t0}
