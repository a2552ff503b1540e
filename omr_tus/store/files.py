"""Where completed uploads are read from, on any node: the durable directory (the local store,
possibly on a shared mount) or the bucket (the S3 store), copied to a local cache file for the
readers that need one (a ZIP is read out of order)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from .base import LocalFiles, RemoteFiles, Store
from .local import LocalStore

READ_BLOCK = 1024 * 1024


class CompletedFiles:
    def __init__(self, incoming: Store, durable: LocalStore, cache_dir: Path, cache_files: int = 8):
        self.incoming = incoming
        self.durable = durable
        self.remote = incoming if isinstance(incoming, RemoteFiles) else None
        self.cache_dir = Path(cache_dir)
        self.cache_files = cache_files
        self._fetching: dict[str, asyncio.Task] = {}

    def _open(self, upload_id: str, location: str):
        """The file where it is now (call off the event loop): an open file survives the move
        from the incoming store to durable storage that may happen meanwhile."""
        candidates = (
            [self.incoming.path(upload_id)]
            if (location == "store" and isinstance(self.incoming, LocalFiles))
            else []
        )
        for path in [*candidates, self.durable.path(upload_id)]:
            with contextlib.suppress(FileNotFoundError):
                return open(path, "rb")
        raise FileNotFoundError(f"upload {upload_id} has no file")

    @contextlib.asynccontextmanager
    async def stream(self, upload_id: str, location: str) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """(size, chunks) of a completed upload; FileNotFoundError if it has no bytes anywhere."""
        if self.remote is not None:
            async with self.remote.read(upload_id) as opened:
                yield opened
            return
        f = await asyncio.to_thread(self._open, upload_id, location)
        try:
            yield os.fstat(f.fileno()).st_size, _chunks(f)
        finally:
            f.close()

    async def local_path(self, upload_id: str) -> Path:
        """A local file with the completed upload's bytes. From a bucket it is downloaded once
        into the cache (concurrent callers share the download); the cache keeps the most
        recently used `cache_files` files."""
        if self.remote is None:
            return self.durable.path(upload_id)
        path = self.cache_dir / upload_id
        if not path.exists():
            fetching = self._fetching.get(upload_id)
            if fetching is None:
                fetching = self._fetching[upload_id] = asyncio.ensure_future(
                    self._fetch(self.remote, upload_id, path)
                )
                fetching.add_done_callback(lambda _: self._fetching.pop(upload_id, None))
            await asyncio.shield(fetching)
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)
        return path

    async def forget(self, upload_id: str) -> None:
        """Drops this node's cached copy of a removed upload, after a download of it under way
        ends (a reader that has it open keeps reading it until it closes it)."""
        fetching = self._fetching.get(upload_id)
        if fetching is not None:
            await asyncio.gather(asyncio.shield(fetching), return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self.cache_dir / upload_id)

    async def _fetch(self, remote: RemoteFiles, upload_id: str, path: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        await remote.download(upload_id, path)
        await asyncio.to_thread(self._evict)

    def _evict(self) -> None:
        files = sorted(
            (p for p in self.cache_dir.iterdir() if p.is_file() and "." not in p.name),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in files[self.cache_files :]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()  # a reader that has it open keeps reading it


async def _chunks(f) -> AsyncIterator[bytes]:
    while block := await asyncio.to_thread(f.read, READ_BLOCK):
        yield block


async def read_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file's bytes, read in a thread block by block."""
    f = await asyncio.to_thread(open, path, "rb")
    try:
        async for block in _chunks(f):
            yield block
    finally:
        f.close()
