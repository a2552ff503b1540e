"""Retention, applied by the janitor: OMR_TUS_KEEP_FILES_DAYS removes a finished batch's file
that many days after the batch completed (its sheets and answers stay, and the batch says when
its file went); OMR_TUS_KEEP_BATCHES_DAYS removes whole batches. 0 keeps everything. One node
at a time runs a pass (a PostgreSQL advisory lock); the removals themselves go through the
upload core, under each upload's lock, like a DELETE."""

from __future__ import annotations

import datetime as dt
import logging

from ..config import Settings
from ..db.models import utcnow
from ..db.removals import RemovalRepo
from ..uploads.service import UploadService

log = logging.getLogger("omr_tus.retention")
LOCK_KEY = 0x6F6D_7274_7573_0001  # the advisory lock of a retention pass ("omrtus" 1)
CHUNK = 200  # uploads looked up at a time
MAX_PER_PASS = 5000  # a pass ends after this many removals; the next pass goes on


class Retention:
    def __init__(self, settings: Settings, repo: RemovalRepo, service: UploadService):
        self._files_days = settings.keep_files_days
        self._batches_days = settings.keep_batches_days
        self._repo = repo
        self._service = service

    @property
    def enabled(self) -> bool:
        return bool(self._files_days or self._batches_days)

    async def apply(self, now: dt.datetime | None = None) -> dict[str, int]:
        """One pass at `now` (a controllable clock for tests): how many batches and files went."""
        done = {"batches": 0, "files": 0}
        if not self.enabled:
            return done
        now = now or utcnow()
        async with self._repo.exclusively(LOCK_KEY) as mine:
            if not mine:
                return done
            if self._batches_days:
                done["batches"] = await self._remove(now - dt.timedelta(days=self._batches_days), whole=True)
            if self._files_days:
                done["files"] = await self._remove(now - dt.timedelta(days=self._files_days), whole=False)
        if done["batches"] or done["files"]:
            log.info("retention: %(batches)d batches and %(files)d files removed", done)
        return done

    async def _remove(self, before: dt.datetime, whole: bool) -> int:
        removed = 0
        while removed < MAX_PER_PASS:
            due = await self._repo.due(before, files_only=not whole, limit=CHUNK)
            progress = 0
            for upload_id in due:
                progress += await self._service.retire(upload_id, whole)
            removed += progress
            if progress:
                log.info("retention: %d %s removed so far", removed, "batches" if whole else "files")
            if len(due) < CHUNK or not progress:  # all done, or only busy ones left (next pass)
                break
        return removed
