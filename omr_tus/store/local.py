"""A store that keeps each upload as one file in a directory (RAM disk, local disk or a shared mount)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from collections.abc import AsyncIterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .base import WriteProgress
from .fileio import write_all

FREE_SPACE_TTL = 0.5
GATHER_LIMIT = 1024 * 1024  # at most this much waits for the writer thread, per upload
# A write waits for at least this much: a body that arrives slowly (a browser's 17 KiB pieces)
# would otherwise cost a thread hop per piece, 2.5 times the CPU of the body itself
# (BENCHMARKS.md, "the page against the browser ceiling"). What waits is written when the body
# ends, breaks or is taken over, before the offset is committed.
GATHER_MIN = 256 * 1024
GATHER_PIECES = 64  # at most this many pieces wait: a body sent in tiny pieces holds little memory


def _copy_file_into(src: Path, dst: Path, dst_offset: int) -> int:
    """The kernel copies (copy_file_range); Python never holds the bytes."""
    copied = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
    if not src.exists():  # an upload that never received a byte has no file
        os.close(fd)
        return 0
    with open(src, "rb") as fin, os.fdopen(fd, "wb", closefd=True) as fout:
        size = os.fstat(fin.fileno()).st_size
        while copied < size:
            n = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied, copied, dst_offset + copied)
            if n == 0:
                raise OSError(f"copy_file_range stopped at {copied} of {size} bytes")
            copied += n
    return copied


def own_directory(directory: Path) -> None:
    """Creates the directory for this user only (0700), or checks that an existing one is this
    user's: in a shared place like /dev/shm another user could have made it first, to read
    or replace the uploads that land there."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(
            f"The store directory {directory} is not a directory (a symbolic link or a file); "
            "remove it or set another one (OMR_TUS_STORE_DIR, OMR_TUS_DATA_DIR)"
        )
    if info.st_uid != os.geteuid():
        raise RuntimeError(
            f"The store directory {directory} belongs to user id {info.st_uid}, not to this "
            f"server's user ({os.geteuid()}): another user may read or replace its uploads. "
            "Remove it, or set another one (OMR_TUS_STORE_DIR, OMR_TUS_DATA_DIR)"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


class LocalStore:
    def __init__(self, directory: Path, threads: int = 16):
        self.directory = Path(directory)
        own_directory(self.directory)
        # A pool of its own, so slow disk writes never queue behind other executor work.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")
        self._free, self._free_at = 0, -FREE_SPACE_TTL

    def path(self, upload_id: str) -> Path:
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self.directory / upload_id

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def create(self, upload_id: str) -> None:
        """Nothing to do: a file appears with its first byte, so creating an upload costs
        no filesystem operation (and no thread hop) at all."""
        self.path(upload_id)  # still refuse an id that is not a plain file name

    async def write(
        self, upload_id: str, offset: int, blocks: AsyncIterable[bytes], progress: WriteProgress
    ) -> int:
        """Pipelined: while one pwritev runs in a thread, the blocks arriving meanwhile are
        gathered (never joined: no copy) into the next one, from GATHER_MIN up to GATHER_LIMIT
        bytes."""
        loop = asyncio.get_running_loop()
        fd = await self._run(os.open, self.path(upload_id), os.O_WRONLY | os.O_CREAT, 0o600)
        position = offset
        pending: asyncio.Future | None = None
        gathered: list[bytes] = []
        size = 0
        try:
            async for block in blocks:
                progress.last_activity = time.monotonic()
                gathered.append(block)
                size += len(block)
                if len(gathered) < GATHER_PIECES and (
                    size < GATHER_MIN or (pending is not None and not pending.done() and size < GATHER_LIMIT)
                ):
                    continue
                if pending is not None:  # still set if this await fails or is cancelled: _drain sees it
                    progress.written += await asyncio.shield(pending)
                    pending = None
                pending = loop.run_in_executor(self._pool, write_all, fd, gathered, position)
                position += size
                gathered, size = [], 0
        finally:
            # Even when the body broke or the request was cancelled: every block that arrived
            # is written, after the write in flight, before the file is closed.
            await asyncio.shield(self._drain(fd, pending, gathered, position, progress))
        return progress.written

    async def _drain(
        self,
        fd: int,
        pending: asyncio.Future | None,
        gathered: list[bytes],
        position: int,
        progress: WriteProgress,
    ) -> None:
        try:
            if pending is not None:  # if it failed, nothing after it is written (no hole)
                progress.written += await pending
            if gathered:
                progress.written += await self._run(write_all, fd, gathered, position)
        finally:
            await self._run(os.close, fd)

    async def copy_into(self, src_id: str, dst_id: str, dst_offset: int) -> int:
        return await self._run(_copy_file_into, self.path(src_id), self.path(dst_id), dst_offset)

    async def size(self, upload_id: str) -> int:
        try:
            return (await self._run(os.stat, self.path(upload_id))).st_size
        except FileNotFoundError:
            return 0

    async def truncate(self, upload_id: str, size: int) -> None:
        await self._run(os.truncate, self.path(upload_id), size)

    async def delete(self, upload_id: str) -> None:
        try:
            await self._run(os.unlink, self.path(upload_id))
        except FileNotFoundError:
            pass

    def free_space(self) -> int:
        """Cached for a moment: statvfs is a syscall on every creation otherwise, and callers
        subtract what they have promised since (the service's reservations)."""
        now = time.monotonic()
        if now - self._free_at > FREE_SPACE_TTL:
            self._free, self._free_at = shutil.disk_usage(self.directory).free, now
        return self._free

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, True)
