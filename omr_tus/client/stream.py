"""A byte range of a file as a request body, read from disk one block at a time.

A chunk may be 99 MiB and the file tens of GiB, so neither is ever held in memory: at most
one 1 MiB block is. The size is known up front, so aiohttp sends a Content-Length (tus
PATCH needs one, and the legacy API refuses an oversized chunk before reading it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aiohttp import payload

BLOCK = 1024 * 1024
STALL = 120.0  # seconds a block may wait for the server to read it before the attempt fails


class FileSlice(payload.Payload):
    def __init__(self, path: Path, offset: int, length: int, sent: Callable[[int], None], **kwargs):
        super().__init__(path, content_type="application/octet-stream", **kwargs)
        self._path = path
        self._offset = offset
        self._size = length
        self._sent = sent  # told each block's length once the socket took it: drives the progress bar

    async def write(self, writer) -> None:
        with open(self._path, "rb") as file:
            file.seek(self._offset)
            left = self._size
            while left:
                block = await asyncio.to_thread(file.read, min(BLOCK, left))
                if not block:
                    raise OSError(f"{self._path} shrank while it was being uploaded")
                async with asyncio.timeout(STALL):
                    await writer.write(block)
                left -= len(block)
                self._sent(len(block))

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file slice is streamed, never decoded to text")
