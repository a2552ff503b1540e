"""After completion, in the background: the file leaves the RAM disk for durable storage
under the data dir, and the same single read gives its sha256. So the upload path never
hashes (the completing response is not delayed by it, and a PATCH costs only the write),
and the file is read once after it arrived, whatever order its bytes came in. A file in a
bucket is already durable: it is only read for its sha256."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import contextlib
from pathlib import Path

from ..store import LocalFiles, RemoteFiles
from ..store.files import CompletedFiles
from .model import UploadInfo
from .service import UploadService

log = logging.getLogger("omr_tus.archive")
READ_BLOCK = 1024 * 1024
PARALLEL_MOVES = 2  # uploads that finish together move one or two at a time: bounded memory and disk load


def copy_and_hash(src: Path, dst: Path | None) -> str:
    """One pass over src: its sha256 and, when dst is given, a durable (fsynced) copy."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_BLOCK)
    view = memoryview(buffer)
    tmp = dst.with_name(dst.name + ".part") if dst is not None else None
    with open(src, "rb", buffering=0) as fin, \
            (open(tmp, "wb", buffering=0) if tmp else contextlib.nullcontext()) as fout:
        while n := fin.readinto(buffer):
            digest.update(view[:n])
            if fout is not None:
                done = 0
                while done < n:
                    done += fout.write(view[done:n])
        if fout is not None:
            os.fsync(fout.fileno())
    if tmp is not None:
        os.replace(tmp, dst)
    return digest.hexdigest()


class Archiver:
    def __init__(self, service: UploadService, files: CompletedFiles):
        self.service = service
        self.files = files
        self.durable = files.durable
        self._moves = asyncio.Semaphore(PARALLEL_MOVES)

    async def __call__(self, info: UploadInfo) -> None:
        store = self.service.store
        if isinstance(store, RemoteFiles):
            async with self._moves:
                sha256 = await self._hash(info)
            await self._done(info, sha256)
            return
        moving = (info.location == "store" and isinstance(store, LocalFiles)
                  and store.directory.resolve() != self.durable.directory.resolve())
        if moving:
            source = await asyncio.to_thread(store.ensure, info.id)
        else:
            source = self.durable.path(info.id)
            if not source.exists():
                source = await asyncio.to_thread(self.durable.ensure, info.id)
        async with self._moves:
            sha256 = await asyncio.to_thread(copy_and_hash, source, self.durable.path(info.id) if moving else None)
        if moving:
            await self.service.repo.update_upload(info.id, location="durable")
            info.location = "durable"
            await store.delete(info.id)
            log.info("Upload %s: moved to durable storage", info.id)
        await self._done(info, sha256)

    async def _hash(self, info: UploadInfo) -> str:
        digest = hashlib.sha256()
        async with self.files.stream(info.id, info.location) as (_, chunks):
            async for chunk in chunks:
                await asyncio.to_thread(digest.update, chunk)
        return digest.hexdigest()

    async def _done(self, info: UploadInfo, sha256: str) -> None:
        if info.location != "durable":
            await self.service.repo.update_upload(info.id, location="durable")
            info.location = "durable"
        info.sha256 = sha256
        await self.service.repo.record_sha256(info.id, sha256)

    async def recover(self) -> None:
        """Completed uploads a stopped node had not moved yet: finish their move now."""
        for upload_id in await self.service.repo.uploads_to_archive():
            row = await self.service.repo.upload(upload_id)
            if row is not None:
                self.service.spawn(self(UploadInfo.from_row(row)))
