"""Files a crash leaves behind, removed by the janitor (and once at start): RAM-disk files no
upload needs any more (already durable, failed, terminated, or with no row at all), durable
copies cut short under their temporary name (`<id>.<16 hex>.part`, uploads/archive.py) or
whose upload is gone (removed, failed), copies in this node's cache of completed files whose
upload was removed on another node, and spooled legacy chunks of requests that died. Only
local files are swept: in a bucket, `<id>.part` is the live tail of an upload."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from ..db.repo import Repo
from ..store import LocalStore, Store
from .archive import TEMPORARY
from .service import SPOOL_PREFIX

log = logging.getLogger("omr_tus.sweeper")
_ID = re.compile(r"^([0-9a-f]{32})$")
_DOWNLOAD = re.compile(r"^[0-9a-f]{32}\.\d+\.part$")  # a download into the cache cut short (S3Store.download)
LOOKUP_BATCH = 500


def _listing(directory: Path) -> list[tuple[str, float]]:
    """(name, seconds since last written) of the regular files in a directory."""
    now = time.time()
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                found.append((entry.name, now - entry.stat(follow_symlinks=False).st_mtime))
        except FileNotFoundError:
            pass
    return found


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _needed(state: tuple[str, str] | None) -> bool:
    """Whether an upload in this (status, location) may still need its RAM-disk file, or a
    durable copy being made under a temporary name."""
    return state is not None and (state[0] == "active" or (state[0] == "complete" and state[1] == "store"))


def _kept(state: tuple[str, str] | None) -> bool:
    """Whether an upload in this (status, location) may have a durable (or cached) file."""
    return _needed(state) or state == ("complete", "durable")


class Sweeper:
    def __init__(
        self,
        repo: Repo,
        incoming: Store,
        durable: LocalStore,
        scratch: LocalStore,
        cache: Path,
        stale_after: float,
    ):
        self.repo = repo
        # One directory for uploads in progress and completed ones: its files are the durable ones.
        shared = (
            isinstance(incoming, LocalStore) and incoming.directory.resolve() == durable.directory.resolve()
        )
        self.incoming = incoming if isinstance(incoming, LocalStore) and not shared else None
        self.durable_grace = shared  # a file there may belong to a creation not committed yet
        self.spools = incoming.directory if isinstance(incoming, LocalStore) else None
        self.durable = durable
        self.scratch = scratch
        self.cache = cache
        # A file of a live request is written at least every idle_timeout; one untouched this
        # long belongs to no live request.
        self.stale_after = stale_after

    async def sweep(self) -> int:
        removed = 0
        if self.incoming is not None:
            removed += await self._orphans(self.incoming.directory, _ID)
        if self.spools is not None:
            removed += await self._stale(self.spools, SPOOL_PREFIX)
        removed += await self._orphans(self.durable.directory, TEMPORARY)
        removed += await self._orphans(self.durable.directory, _ID, _kept, grace=self.durable_grace)
        removed += await self._orphans(self.cache, _ID, _kept, grace=False)
        removed += await self._stale(self.cache, _DOWNLOAD)
        removed += await self._stale(self.scratch.directory, "")
        if removed:
            log.info("sweeper: %d orphaned files removed", removed)
        return removed

    async def _stale(self, directory: Path, name: str | re.Pattern) -> int:
        """Files whose name starts with `name` (or matches it), untouched for stale_after:
        spooled chunks of dead requests (a live request writes its spool at least every
        idle_timeout, and places it at once), downloads into the cache cut short."""
        removed = 0
        for found, age in await asyncio.to_thread(_listing, directory):
            named = found.startswith(name) if isinstance(name, str) else name.match(found)
            if named and age > self.stale_after:
                removed += await asyncio.to_thread(_unlink, directory / found)
        return removed

    async def _orphans(
        self,
        directory: Path,
        pattern: re.Pattern,
        needed: Callable[[tuple[str, str] | None], bool] = _needed,
        grace: bool = True,
    ) -> int:
        """Files whose name `pattern` matches (group 1: an upload id) that their upload no longer
        needs; with no upload row, with `grace` once stale (a creation that has not committed
        its row yet)."""
        files = [
            (name, match.group(1), age)
            for name, age in await asyncio.to_thread(_listing, directory)
            if (match := pattern.match(name))
        ]
        removed = 0
        for start in range(0, len(files), LOOKUP_BATCH):
            batch = files[start : start + LOOKUP_BATCH]
            states = await self.repo.upload_states([upload_id for _, upload_id, _ in batch])
            for name, upload_id, age in batch:
                state = states.get(upload_id)
                if needed(state) or (grace and state is None and age <= self.stale_after):
                    continue
                removed += await asyncio.to_thread(_unlink, directory / name)
        return removed
