"""Removing a completed upload for good: whole (a DELETE from its owner or an admin, or
retention of batches) or only its file (retention of files; what was read from it stays).
The upload core calls this under the upload's lock. Subscribers remove what they made of the
upload in the transaction that marks it (omr_tus/db/removals.py); then every copy of the bytes
goes: the in-progress store (RAM disk or bucket), durable storage and this node's cache of
completed files (other nodes' caches are swept: uploads/sweeper.py). A crash in between
leaves the upload marked, and `finish_pending` completes the removal at start and on every
janitor pass."""

from __future__ import annotations

import logging

from .. import crashpoints
from ..db.removals import RemovalRepo
from ..store import Store
from ..store.files import CompletedFiles
from .events import RemovalSubscriber, UploadRemoved
from .model import UploadInfo

log = logging.getLogger("omr_tus.removal")


class Remover:
    def __init__(self, repo: RemovalRepo, store: Store, files: CompletedFiles, subscriber: RemovalSubscriber):
        self._repo = repo
        self._store = store
        self._files = files
        self._subscriber = subscriber

    async def remove(self, info: UploadInfo, whole: bool, by: int | None) -> None:
        async with self._repo.removing(info.id, whole) as record:
            await self._subscriber.removing(UploadRemoved(info, whole, by, record))
        crashpoints.reach("marked")
        await self._erase(info.id, whole)
        log.info(
            "Upload %s: %s removed (%d bytes)%s",
            info.id,
            "upload, its batch and its file" if whole else "file",
            info.offset,
            "" if by is None else f" by user {by}",
        )

    async def _erase(self, upload_id: str, whole: bool) -> None:
        """Every copy of the bytes (and of a concatenation's partial uploads, which a crash may
        have left holding theirs); then the mark goes. Each step may run again."""
        partials = await self._repo.partials_of(upload_id) if whole else []
        for copy in (upload_id, *partials):
            await self._store.delete(copy)
            await self._files.durable.delete(copy)
            await self._files.forget(copy)
        await self._repo.removed(upload_id, whole)

    async def finish_pending(self) -> int:
        """Removals a crash interrupted: their bytes go now. One that fails (a bucket away) is
        logged and tried again on the next pass; the others go on."""
        finished = 0
        for row in await self._repo.pending():
            try:
                await self._erase(row.id, row.whole)
                finished += 1
            except Exception:
                log.exception("Upload %s: its interrupted removal failed again; retrying later", row.id)
        if finished:
            log.info("%d interrupted removals finished", finished)
        return finished
