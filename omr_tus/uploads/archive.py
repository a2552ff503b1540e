"""After completion, in the background: the file leaves the RAM disk for durable storage
under the data dir, and its sha256 is computed if the bytes did not arrive in order."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from pathlib import Path

from ..store import LocalFiles, LocalStore
from .model import UploadInfo
from .service import UploadService

log = logging.getLogger("omr_tus.archive")
READ_BLOCK = 4 * 1024 * 1024


def _copy_durably(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, tmp)  # sendfile / copy_file_range: the kernel copies, not Python
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dst)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class Archiver:
    def __init__(self, service: UploadService, durable: LocalStore):
        self.service = service
        self.durable = durable

    def path(self, info: UploadInfo) -> Path:
        """Where a completed upload's bytes are now."""
        if info.location == "store" and isinstance(self.service.store, LocalFiles):
            path = self.service.store.path(info.id)
            if path.exists():
                return path
        return self.durable.path(info.id)  # moved, possibly since the row was read

    async def __call__(self, info: UploadInfo) -> None:
        store = self.service.store
        if (info.location == "store" and isinstance(store, LocalFiles)
                and store.directory.resolve() != self.durable.directory.resolve()):
            await asyncio.to_thread(_copy_durably, store.path(info.id), self.durable.path(info.id))
            await self.service.repo.update_upload(info.id, location="durable")
            info.location = "durable"
            await store.delete(info.id)
            log.info("Upload %s: moved to durable storage", info.id)
        elif info.location == "store":
            await self.service.repo.update_upload(info.id, location="durable")
            info.location = "durable"
        if info.sha256 is None:
            info.sha256 = await asyncio.to_thread(sha256_of, self.path(info))
            await self.service.repo.record_sha256(info.id, info.sha256)
            log.info("Upload %s: sha256 computed after completion", info.id)

    async def recover(self) -> None:
        """Completed uploads a stopped node had not moved yet: finish their move now."""
        for upload_id in await self.service.repo.uploads_to_archive():
            row = await self.service.repo.upload(upload_id)
            if row is not None:
                self.service.spawn(self(UploadInfo.from_row(row)))
