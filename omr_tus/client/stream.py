"""A byte range of a file as a request body, read from disk one block at a time.

A chunk may be 99 MiB and the file tens of GiB, so neither is ever held in memory: the kernel
sends the file to the socket (sendfile), or, over TLS, at most two 4 MiB blocks are held (one
being sent, the next being read). The size is known up front, so aiohttp sends a
Content-Length (tus PATCH needs one, and the legacy API refuses an oversized chunk before
reading it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import payload

from .progress import BytesBar

BLOCK = 4 * 1024 * 1024
SENDFILE_BLOCK = 16 * 1024 * 1024  # the kernel's copies: few calls, and the progress bar still moves
PIECE = 256 * 1024  # bytes handed to the transport per write
STALL = 120.0  # seconds a block may wait for the server to read it before the attempt fails


class FileSlice(payload.Payload):
    def __init__(self, path: Path, offset: int, length: int, sent: Callable[[int], None], **kwargs):
        super().__init__(path, content_type="application/octet-stream", **kwargs)
        self._path = path
        self._offset = offset
        self._length = length
        self._sent = sent  # told each block's length once the socket took it: drives the progress bar

    @property
    def size(self) -> int:
        """Known up front: aiohttp sends it as the Content-Length."""
        return self._length

    async def write(self, writer) -> None:
        """The kernel sends the file's bytes to the socket (sendfile), one block at a time so
        the progress bar moves; where it cannot (TLS), blocks are read in a thread and written."""
        with open(self._path, "rb", buffering=0) as file:
            if self.kernel_copy(writer):
                writer.send_headers()
                await writer.drain()
                loop = asyncio.get_running_loop()
                sent = 0
                while sent < self._length:
                    count = min(SENDFILE_BLOCK, self._length - sent)
                    async with asyncio.timeout(STALL):
                        done = await loop.sendfile(writer.transport, file, self._offset + sent, count)
                    if done < count:
                        raise OSError(f"{self._path} shrank while it was being uploaded")
                    sent += done
                    self._sent(done)
                return
            await self._read_and_write(file, writer)

    @staticmethod
    def kernel_copy(writer) -> bool:
        """sendfile needs the plain socket: not over TLS."""
        return writer.transport is not None and writer.transport.get_extra_info("sslcontext") is None

    async def _read_and_write(self, file, writer) -> None:
        """The next block is read (in a thread) while the current one goes to the socket."""
        file.seek(self._offset)
        left = self._length
        pending = asyncio.ensure_future(asyncio.to_thread(file.read, min(BLOCK, left)))
        try:
            while left:
                block = await pending
                if not block:
                    raise OSError(f"{self._path} shrank while it was being uploaded")
                left -= len(block)
                if left:
                    pending = asyncio.ensure_future(asyncio.to_thread(file.read, min(BLOCK, left)))
                view = memoryview(block)
                for start in range(0, len(view), PIECE):  # socket-sized writes keep the pipe full
                    async with asyncio.timeout(STALL):
                        await writer.write(view[start : start + PIECE])
                self._sent(len(block))
        finally:
            if not pending.done():  # the request failed mid-body: let the read end before the file closes
                await asyncio.wait([pending])

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a file slice is streamed, never decoded to text")


class FileUpload:
    """What every way of uploading a file knows: the file, its type and task, the chunk size,
    and the progress bar; subclasses say how the bytes travel."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        server: str,
        path: Path,
        *,
        upload_type: str,
        task_id: str | None,
        chunk_size: int,
    ):
        self.http = http
        self.server = server
        self.path = path
        self.size = path.stat().st_size
        self.upload_type = upload_type
        self.task_id = task_id
        self.chunk_size = chunk_size
        self.bar = BytesBar(self.size, path.name)
