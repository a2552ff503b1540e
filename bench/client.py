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
        self.view = memoryview(buf + buf[:max_chunk])
        self.max_chunk = max_chunk
        self._hashes: dict[int, str] = {}

    def slice(self, offset: int, n: int) -> memoryview:
        assert n <= self.max_chunk
        start = offset % PERIOD
        return self.view[start:start + n]

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


async def _body(view: memoryview, marks: dict):
    for i in range(0, len(view), PIECE):
        yield view[i:i + PIECE]
    marks["last_byte"] = time.perf_counter()  # the transport took the last piece (<= 64 KiB left in user space)


def session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=False),
                                 timeout=TIMEOUT, auto_decompress=False)


async def create(sess: aiohttp.ClientSession, base: str, headers: dict, length: int) -> str:
    async with sess.post(base + "/files/", headers={**headers, "Upload-Length": str(length)}) as resp:
        if resp.status != 201:
            raise RuntimeError(f"POST /files/ -> {resp.status}: {(await resp.text())[:300]}")
        await resp.read()
        return urljoin(base + "/files/", resp.headers["Location"])


async def patch(sess: aiohttp.ClientSession, url: str, headers: dict, offset: int, body: memoryview,
                marks: dict | None = None) -> int:
    marks = {} if marks is None else marks
    hdrs = {**headers, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(len(body))}
    data = _body(body, marks) if len(body) > PIECE else bytes(body)
    async with sess.patch(url, headers=hdrs, data=data) as resp:
        marks["response"] = time.perf_counter()
        if resp.status != 204:
            raise RuntimeError(f"PATCH {url} @{offset} -> {resp.status}: {(await resp.text())[:300]}")
        await resp.read()
        new_offset = int(resp.headers["Upload-Offset"])
    if new_offset != offset + len(body):
        raise RuntimeError(f"PATCH {url}: offset {new_offset}, expected {offset + len(body)}")
    return new_offset


async def upload(sess: aiohttp.ClientSession, base: str, headers: dict, data: Data, total: int,
                 chunk: int, stop_at: int | None = None) -> dict:
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
