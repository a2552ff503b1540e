"""A completed upload's way to durable storage, in steps that each survive a crash:
bytes on the RAM disk -> upload complete -> durable copy written and fsynced (file, then its
directory, after an atomic rename) -> location and sha256 recorded in one transaction -> RAM
copy deleted. Every step can run again: a copy is remade from the RAM disk while it is there,
a durable copy is only hashed again, and an upload whose bytes are nowhere is recorded as lost
(never given an empty file and its hash). The single read that makes the copy also gives the
file's digests, so the upload path never hashes. A file in a bucket is already durable: it is
only read for its digests.

By default this runs in the background after the completing response; with
durable_before_ack, or when the client declared the file's digest, the completion waits for
it (uploads/service.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from .. import crashpoints
from ..db.repo import Repo
from ..store import LocalFiles, RemoteFiles, Store
from ..store.files import CompletedFiles
from .digests import DECLARED
from .locks import UploadLocks
from .model import LOST, UploadInfo
from .shared_locks import SharedUploadLocks

log = logging.getLogger("omr_tus.archive")
READ_BLOCK = 1024 * 1024
PARALLEL_MOVES = 2  # uploads that finish together move one or two at a time: bounded memory and disk load
TEMPORARY = re.compile(r"^([0-9a-f]{32})\.[0-9a-f]{16}\.part$")  # temporary_name(); group 1: the upload id
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # seconds between attempts of a failed move (a full disk), doubling


def _hashers(algorithms: Iterable[str]) -> dict:
    return {alg: DECLARED[alg]() for alg in {"sha256", *algorithms}}


def _update(hashers: dict, block) -> None:
    for h in hashers.values():
        h.update(block)


def _fsync_dir(directory: Path) -> None:
    """Makes a rename (or a new file) in the directory survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path, algorithms: Iterable[str] = ()) -> dict[str, str]:
    """The file's digests (sha256 always), in one read."""
    hashers = _hashers(algorithms)
    with open(path, "rb", buffering=0) as f:
        while block := f.read(READ_BLOCK):
            _update(hashers, block)
    return {alg: h.hexdigest() for alg, h in hashers.items()}


def temporary_name(dst: Path) -> Path:
    """A name of its own for one copy in progress (created with O_EXCL): two copiers of the same
    upload (two nodes, or a restarted node's recover() and a live archiver) never write into
    each other's file. The sweeper knows the pattern (TEMPORARY)."""
    return dst.with_name(f"{dst.name}.{secrets.token_hex(8)}.part")


def copy_and_hash(src: Path, dst: Path, algorithms: Iterable[str] = ()) -> dict[str, str]:
    """One pass over src: its digests, and a durable copy at dst (mode 0600), written under a
    temporary name, fsynced, renamed into place and its directory fsynced."""
    hashers = _hashers(algorithms)
    buffer = bytearray(READ_BLOCK)
    view = memoryview(buffer)
    with open(src, "rb", buffering=0) as fin:  # before the temporary file: a missing source leaves nothing
        tmp = temporary_name(dst)
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb", buffering=0) as fout:
                while n := fin.readinto(buffer):
                    _update(hashers, view[:n])
                    done = 0
                    while done < n:
                        done += fout.write(view[done:n])
                os.fsync(fout.fileno())
        except BaseException:  # a full disk: what was copied would only hold the space the next try needs
            tmp.unlink(missing_ok=True)
            raise
    crashpoints.reach("copied")
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)
    crashpoints.reach("renamed")
    return {alg: h.hexdigest() for alg, h in hashers.items()}


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def make_durable(src: Path | None, dst: Path, size: int, algorithms: Iterable[str]) -> dict[str, str] | None:
    """The durable copy of an upload of `size` bytes and its digests, from wherever its bytes
    are (call in a thread). The RAM copy wins while it is whole (a durable file of the same size
    could be left from an earlier attempt); else a whole durable copy is hashed again; None when
    the bytes are nowhere."""
    if src is not None and _size(src) == size:
        return copy_and_hash(src, dst, algorithms)
    if _size(dst) == size:
        digests = hash_file(dst, algorithms)
        with open(dst, "rb") as f:  # already fsynced once if this node wrote it; cheap if so
            os.fsync(f.fileno())
        _fsync_dir(dst.parent)
        return digests
    if size == 0:  # an upload with no bytes has no file anywhere: its durable copy is an empty one
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        _fsync_dir(dst.parent)
        return hash_file(dst, algorithms)
    return None


class Archiver:
    """Moves completed files from the incoming store to durable storage. The upload core calls
    it when a completion waits for the durable copy; the batch intake starts it in the background
    for the others (start), and the app's start-up for what a stopped node left (recover)."""

    def __init__(
        self, repo: Repo, store: Store, locks: UploadLocks | SharedUploadLocks, files: CompletedFiles
    ):
        self._repo = repo
        self._store = store
        self._locks = locks
        self.files = files
        self.durable = files.durable
        self._moves = asyncio.Semaphore(PARALLEL_MOVES)
        self._background: set[asyncio.Task] = set()
        self._closing = asyncio.Event()  # set at shutdown: retrying moves give up

    def start(self, info: UploadInfo) -> None:
        """The move, in the background; awaited at shutdown (drain)."""
        task = asyncio.get_running_loop().create_task(self(info))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """At shutdown: moves still failing give up (the next start retries them); the others end."""
        self._closing.set()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _pause(self, seconds: float) -> bool:
        """Waits `seconds`, or less if the server stops meanwhile (then True)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()

    def _source(self, info: UploadInfo) -> Path | None:
        """The incoming file the durable copy is made from; None once the bytes sit in the
        durable directory (moved, or a store that writes there)."""
        store = self._store
        if info.location != "store" or not isinstance(store, LocalFiles):
            return None
        src = store.path(info.id)
        return src if src.parent.resolve() != self.durable.directory.resolve() else None

    async def preserve(self, info: UploadInfo, algorithms: Iterable[str] = ()) -> dict[str, str] | None:
        """Makes the durable copy (again, if need be) and returns the file's digests (sha256 and
        the `algorithms`), or None if its bytes are lost. Raises what the disk raises (full)."""
        algorithms = tuple(algorithms)
        async with self._moves:
            if isinstance(self._store, RemoteFiles):
                return await self._hash_remote(info, algorithms)
            return await asyncio.to_thread(
                make_durable, self._source(info), self.durable.path(info.id), info.offset, algorithms
            )

    async def _hash_remote(self, info: UploadInfo, algorithms: tuple[str, ...]) -> dict[str, str] | None:
        hashers = _hashers(algorithms)
        try:
            async with self.files.stream(info.id, info.location) as (_, chunks):
                async for chunk in chunks:
                    await asyncio.to_thread(_update, hashers, chunk)
        except FileNotFoundError:
            return None
        return {alg: h.hexdigest() for alg, h in hashers.items()}

    async def release(self, info: UploadInfo) -> None:
        """The RAM copy, once the durable one is recorded."""
        if self._source(info) is not None:
            await self._store.delete(info.id)
        info.location = "durable"

    async def discard(self, info: UploadInfo) -> None:
        """Both copies of a file that will never become a batch (its digest did not match)."""
        await self.durable.delete(info.id)
        await self._store.delete(info.id)

    async def __call__(self, info: UploadInfo) -> None:
        """In the background after completion: retried with growing pauses while it fails (a
        full disk, the database away), until it succeeds or the server stops (the next start
        picks it up again). Nothing to do for a completion that waited for its durable copy."""
        if info.location == "durable" and info.sha256:
            return
        delay = RETRY_FIRST
        while True:
            try:
                await self._archive(info)
                return
            except Exception as exc:
                if self._closing.is_set():
                    log.warning(
                        "Upload %s: not moved to durable storage (%s); the next start retries", info.id, exc
                    )
                    return
                log.warning(
                    "Upload %s: move to durable storage failed (%s: %s); retrying in %.0f s",
                    info.id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
            if await self._pause(delay):
                return
            delay = min(delay * 2, RETRY_MAX)

    async def _archive(self, info: UploadInfo) -> None:
        """Under the upload's lock (across nodes with PostgreSQL's advisory locks), and only if the
        upload still waits for it: another node, or this one before a restart, may have done it."""
        async with self._locks.hold(info.id):
            row = await self._repo.upload(info.id)
            if (
                row is None
                or row.status != "complete"
                or not (row.location == "store" or (row.location == "durable" and not row.sha256))
            ):
                return
            info.location, info.offset = row.location, row.upload_offset
            await self._make_durable(info)

    async def _make_durable(self, info: UploadInfo) -> None:
        digests = await self.preserve(info)
        if digests is None:
            await self._repo.record_lost(info.id, LOST)
            log.error(
                "Upload %s: its %d bytes were lost before they reached durable storage (a reboot wiped "
                "the RAM disk?); its batch failed",
                info.id,
                info.offset,
            )
            info.location, info.offset = "lost", 0
            return
        await self._repo.record_durable(info.id, digests["sha256"])
        info.sha256 = digests["sha256"]
        crashpoints.reach("recorded")
        await self.release(info)
        log.info("Upload %s: in durable storage, sha256 %s", info.id, info.sha256)

    async def recover(self) -> None:
        """Completed uploads a stopped node had not made durable (or had, without recording
        the sha256): finish that now, in the background."""
        for upload_id in await self._repo.uploads_to_archive():
            row = await self._repo.upload(upload_id)
            if row is not None:
                self.start(UploadInfo.from_row(row))
