"""The upload core: creation, writing (at an offset, or as a numbered part), length
declaration, completion, concatenation, termination and expiry of uploads, independent of the
protocol that carries them (tus, IETF, legacy chunks are adapters over its public methods). It
alone touches the uploads' rows, the store, the locks, the reservations and its caches; what a
completed upload becomes is not its business: it publishes UploadCompleted (events.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import errno
import logging
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import IntegrityError

from .. import crashpoints, errors
from ..config import Settings
from ..db.models import utcnow
from ..db.repo import Repo
from ..metrics import Counters
from ..store import Finisher, LocalStore, PartWriter, RangeCopier, Store, Truncater, WriteProgress
from ..store.files import read_chunks
from . import concat
from .archive import Archiver
from .checksums import Checksum
from .digests import declared, merged, mismatch
from .events import CompletionSubscriber, RemovalRefused, UploadCompleted
from .locks import Holder, UploadLocks
from .model import LOST, TYPES_NEEDING_TASK, Chunk, Interrupted, Principal, UploadInfo
from .removal import Remover
from .reservations import Claim, Reservations, mb
from .shared_locks import SharedUploadLocks
from .validation import check_upload_type

log = logging.getLogger("omr_tus.uploads")
COMMIT_EVERY = 1.0  # seconds between offset commits during one long write
OWNER_CACHE_SIZE = 100_000
MAX_CHUNK = 100 * 1024 * 1024
# A spooled chunk's name: never an upload id, so the sweeper ages spools apart from uploads.
SPOOL_PREFIX = "spool-"


class _ParallelDigest:
    """Feeds each block to a checksum in a pool thread while the store writes it, so
    verifying Upload-Checksum adds no time to a write."""

    def __init__(self, hasher, pool: ThreadPoolExecutor):
        self.hasher = hasher
        self.pool = pool
        self._pending: asyncio.Future | None = None

    async def feed(self, blocks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for block in blocks:
            await self.settle()
            self._pending = loop.run_in_executor(self.pool, self.hasher.update, block)
            yield block

    async def settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.shield(pending)


class RandomIds:
    """Upload ids of 128 random bits from the OS's CSPRNG, drawn 256 at a time: one
    getrandom() per 256 creations instead of one each (it is a slow syscall in some VMs)."""

    BATCH = 256

    def __init__(self) -> None:
        self._pool = b""

    def new(self) -> str:
        if not self._pool:
            self._pool = os.urandom(16 * self.BATCH)
        raw, self._pool = self._pool[:16], self._pool[16:]
        return raw.hex()


class StreamTooLarge(Exception):
    """The body carried more bytes than the upload has room for."""


def too_large(size: int, limit: int = MAX_CHUNK) -> errors.ServiceError:
    return errors.TOO_LARGE(f"Chunk size {size} exceeds maximum {limit}")


class UploadService:
    """The upload core. `archiver` makes completed files durable; a completion waits for it
    when settings.durable_before_ack or a declared digest asks for that. `subscriber` hears
    of every completed upload (not of partial uploads, which only wait to be concatenated);
    `remover` removes completed ones (telling its own subscriber)."""

    def __init__(
        self,
        settings: Settings,
        repo: Repo,
        store: Store,
        locks: UploadLocks | SharedUploadLocks,
        counters: Counters,
        *,
        archiver: Archiver,
        subscriber: CompletionSubscriber,
        remover: Remover,
        scratch: LocalStore,
    ):
        self._settings = settings
        self._counters = counters
        self._repo = repo
        self._store = store
        self._locks = locks
        self.archiver = archiver
        self._subscriber = subscriber
        self._remover = remover
        self.max_chunk = MAX_CHUNK
        # Chunks that arrive before their form fields wait on the store itself when it can place
        # them later without the bytes passing through Python; else in a local scratch folder.
        self._spool_store: Store = store if isinstance(store, RangeCopier) else scratch
        # Space promised to incomplete uploads, counted from the database.
        self._reservations = Reservations(
            repo, store, settings.reservation_idle_timeout, settings.reservation_user_share
        )
        # Incomplete uploads as this process last committed them, under their lock: the store
        # holds exactly `offset` bytes, so the next PATCH needs neither a SELECT nor a look at
        # the store. Every change goes through this process's lock (termination and expiry
        # drop the entry); empty after a restart.
        self._in_sync: dict[str, UploadInfo] = {}
        self._ids = RandomIds()
        # Upload id -> owner id. An owner never changes, so every node may keep it: the ownership
        # check before the lock (_owned) then costs no query.
        self._owners: dict[str, int] = {}
        self._background: set[asyncio.Task] = set()
        self._hash_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hash")

    @property
    def max_upload_size(self) -> int:
        return self._settings.max_upload_size

    def lock_figures(self) -> tuple[int, int | None]:
        """Waits for an upload's lock, and the database queries the locks cost (None: in-process)."""
        queries = self._locks.queries if isinstance(self._locks, SharedUploadLocks) else None
        return self._locks.waits, queries

    def quotas_changed(self) -> None:
        """A user's quota changed: this node's next check reads it (another node's within
        reservations.SNAPSHOT_TTL)."""
        self._reservations.forget()

    def interrupt_idle(self) -> None:
        """Writers whose client sent nothing for idle_timeout let go of their upload."""
        self._locks.interrupt_idle(self._settings.idle_timeout)

    # -- lookup -------------------------------------------------------------
    async def get(self, upload_id: str, user: Principal) -> UploadInfo:
        """The upload as `user` may see it: another user's upload is not found."""
        info = await self.reload(upload_id) if _plausible_id(upload_id) else None
        if info is not None:
            self._remember_owner(info.id, info.owner_id)
        if info is None or info.status == "deleted" or (info.owner_id != user.id and not user.is_admin):
            raise errors.NOT_FOUND(f"Upload {upload_id} not found")
        if info.status in ("terminated", "expired", "failed"):
            raise errors.UPLOAD_GONE(GONE[info.status].format(upload_id))
        return info

    async def reload(self, upload_id: str) -> UploadInfo | None:
        """The upload's current state, with its batch id once complete (no ownership check)."""
        row = await self._repo.upload(upload_id)
        if row is None:
            return None
        info = UploadInfo.from_row(row)
        if info.is_complete:
            batch = await self._repo.batch_for_upload(upload_id)
            info.batch_id = batch.id if batch else None
        return info

    def _cached(self, upload_id: str) -> UploadInfo | None:
        """The upload as this process last committed it, if nobody else can have changed it
        since (one node; with several, each request reads the database and the store)."""
        return self._in_sync.get(upload_id) if self._locks.local_only else None

    def _known(self, upload_id: str, user: Principal) -> UploadInfo | None:
        known = self._cached(upload_id)
        if known is None or (known.owner_id != user.id and not user.is_admin):
            return None
        return dataclasses.replace(known)

    async def current(self, upload_id: str, user: Principal) -> UploadInfo:
        """The upload with an offset that is on the store. A writer whose client went
        silent is asked to let go first, so a resuming client sees every byte it sent.
        Only its owner (or an admin) may ask: a stranger is answered before any lock is taken."""
        await self._owned(upload_id, user)
        try:
            async with self._locks.hold(upload_id, timeout=self._settings.stall_timeout + 0.2):
                return await self._reconciled(await self.get(upload_id, user))
        except errors.ServiceError as exc:
            if exc.spec is not errors.LOCKED:
                raise
        return await self.get(upload_id, user)  # a live writer: its last committed offset

    async def _owned(self, upload_id: str, user: Principal) -> None:
        """404 before any lock is taken, so a stranger can neither interrupt nor wait on the
        owner's request."""
        owner = self._owners.get(upload_id)
        if owner is None:
            await self.get(upload_id, user)
        elif owner != user.id and not user.is_admin:
            raise errors.NOT_FOUND(f"Upload {upload_id} not found")

    def _remember_owner(self, upload_id: str, owner_id: int) -> None:
        if len(self._owners) >= OWNER_CACHE_SIZE:
            self._owners.clear()
        self._owners[upload_id] = owner_id

    # -- creation -----------------------------------------------------------
    async def create(
        self,
        user: Principal,
        *,
        length: int | None,
        metadata: dict[str, Any],
        raw_metadata: str | None,
        filename: str | None,
        upload_type: str,
        task_id: str | None,
        protocol: str = "tus",
        total_chunks: int | None = None,
        concat: str | None = None,
        parts: list[str] | None = None,
    ) -> UploadInfo:
        self.check_length(length)
        upload_id = self._ids.new()
        now = utcnow()
        values: dict[str, Any] = dict(
            id=upload_id,
            owner_id=user.id,
            protocol=protocol,
            length=length,
            upload_offset=0,
            upload_metadata=metadata,
            raw_metadata=raw_metadata,
            filename=filename,
            upload_type=upload_type,
            task_id=task_id,
            status="active",
            location="store",
            created_at=now,
            updated_at=now,
            expires_at=self.expiry(now),
            total_chunks=total_chunks,
            concat=concat,
        )
        # 507 if it cannot fit the store, 413 if not the user's quota (a final's bytes are its
        # partial uploads', already counted there: its copy needs space, not quota)
        async with self._reservations.claim(user.id, length or 0, counted=0 if parts else None):
            await self._store.create(upload_id)
            try:
                if parts:
                    await self._repo.insert_final(values, parts)
                else:
                    await self._repo.insert_upload(**values)
            except BaseException:
                await self._store.delete(upload_id)
                raise
        self._remember_owner(upload_id, user.id)
        self._counters.inc("uploads_total", event="created")
        log.debug(
            "Upload %s: created (%s, %s)",
            upload_id,
            "length deferred" if length is None else mb(length),
            protocol,
        )
        return UploadInfo(
            id=upload_id,
            owner_id=user.id,
            protocol=protocol,
            length=length,
            offset=0,
            metadata=metadata,
            raw_metadata=raw_metadata,
            filename=filename,
            upload_type=upload_type,
            task_id=task_id,
            status="active",
            location="store",
            sha256=None,
            created_at=now,
            expires_at=values["expires_at"],
            total_chunks=total_chunks,
            concat=concat,
            active_at=now,
        )

    async def kind(
        self, upload_type: str | None, task_id: str | None, *, required: bool = False, part: bool = False
    ) -> tuple[str, str | None]:
        """What an upload to be created is, checked before any byte is taken (400): its type
        (zip_with_qr when not given, unless `required`: validation.check_upload_type) and task
        id (8 digits; for zip_no_qr and images required, and registered: their sheets carry no
        QR code to name their template)."""
        upload_type, task_id = check_upload_type(upload_type, task_id, required=required, part=part)
        if task_id and upload_type in TYPES_NEEDING_TASK and await self._repo.task(task_id) is None:
            raise errors.BAD_REQUEST(
                f"Task {task_id} is not registered: register its sheet template (POST /api/tasks) "
                f"before uploading {upload_type} for it"
            )
        return upload_type, task_id

    async def declare(self, upload_id: str, user: Principal, digests: dict[str, str], source: str) -> None:
        """Whole-file digests declared after creation (an IETF append's Repr-Digest, a legacy
        sha256 field after the file): kept for the completion's check; too late once complete."""
        async with self._locks.hold(upload_id):
            info = await self.get(upload_id, user)
            metadata = merged(dict(info.metadata), digests, source)
            if metadata == info.metadata:
                return
            if info.is_complete:
                raise errors.BAD_REQUEST(
                    f"{source} came after the upload had completed, so it was not checked: "
                    f"declare the digest when the upload is created"
                )
            await self._repo.update_upload(upload_id, upload_metadata=metadata)
            self._in_sync.pop(upload_id, None)

    def check_length(self, length: int | None) -> None:
        if length is not None and length > self._settings.max_upload_size:
            raise errors.TOO_LARGE(
                f"Upload-Length {length} exceeds the maximum upload size {self._settings.max_upload_size}"
            )

    def expiry(self, now: dt.datetime | None = None) -> dt.datetime:
        return (now or utcnow()) + dt.timedelta(seconds=self._settings.upload_expiry)

    # -- appending ----------------------------------------------------------
    async def append(
        self,
        upload_id: str,
        user: Principal,
        offset: int,
        blocks: AsyncIterable[bytes],
        interrupt: Callable[[], None],
        *,
        length: int | None = None,
        content_length: int | None = None,
        checksum: Checksum | None = None,
        received: Callable[[], int] | None = None,
    ) -> UploadInfo:
        """Write a body at offset under the upload's lock; completes the upload when its
        last byte arrives. Bytes that reached the store are kept even if the body fails,
        unless a checksum was given (then the body is all or nothing)."""
        await self._owned(upload_id, user)
        async with self._locks.hold(upload_id) as holder:
            info = await self._writable(upload_id, user)
            if length is not None:
                await self._declare_length(info, length)
            if offset != info.offset:
                raise errors.OFFSET_MISMATCH(
                    f"Upload-Offset {offset} does not match the upload's offset {info.offset}; "
                    f"send a HEAD request and resume from there",
                    headers={"Upload-Offset": str(info.offset)},
                )
            if info.is_complete:  # a repeated final request: nothing to write, same answer
                if content_length:
                    raise errors.TOO_LARGE(f"Upload {info.id} is already complete at {info.offset} bytes")
                return info
            room = (info.length if info.length is not None else self._settings.max_upload_size) - info.offset
            if content_length is not None and content_length > room:
                raise errors.TOO_LARGE(
                    f"The body ({content_length} bytes) would pass the end of the "
                    f"upload at offset {info.offset + room}"
                )
            if info.length is not None and content_length != 0 and self._reservations.lapsed(info.active_at):
                await self._reserve_again(info)
            holder.arm(interrupt, received)
            # a body of unknown final length claims its Content-Length, or its space as its blocks
            # come (507 past the user's share, 413 past their quota)
            need = (content_length or 0) if info.length is None else 0
            async with self._reservations.claim(info.owner_id, need) as claim:
                await self._write(
                    info, holder, blocks if info.length is not None else claim.metered(blocks), room, checksum
                )
            if info.length is not None and info.offset == info.length:
                await self._finish(info)
            return info

    async def declare_length(self, upload_id: str, user: Principal, length: int) -> UploadInfo:
        """The length of an upload created without one; it completes if it holds that many bytes."""
        await self._owned(upload_id, user)
        async with self._locks.hold(upload_id):
            info = await self._writable(upload_id, user)
            await self._declare_length(info, length)
            if info.offset == length and not info.is_complete:
                await self._finish(info)
            return info

    async def _writable(self, upload_id: str, user: Principal) -> UploadInfo:
        """The upload, if bytes may still be written to it (call under its lock)."""
        info = self._known(upload_id, user) or await self._reconciled(await self.get(upload_id, user))
        if info.location == "lost":
            raise errors.UPLOAD_GONE(f"Upload {upload_id}: {LOST}")
        if info.concat == "final":
            raise errors.FORBIDDEN("A final upload is made of its partial uploads; it cannot be patched")
        return info

    async def _reserve_again(self, info: UploadInfo) -> None:
        """An upload that sat idle lost its reservation: it resumes only if its rest still fits."""
        # its rest is in the owner's quota since its length was declared: space only
        async with self._reservations.claim(info.owner_id, info.remaining or 0, counted=0):
            info.active_at = utcnow()
            await self._repo.update_upload(info.id)  # its updated_at: the reservation counts again
        self._in_sync[info.id] = dataclasses.replace(info)

    async def _write(
        self,
        info: UploadInfo,
        holder: Holder,
        blocks: AsyncIterable[bytes],
        room: int,
        checksum: Checksum | None,
    ) -> None:
        start = info.offset

        async def checkpoint(written: int) -> None:
            """The bytes on the store, or with a checksum (all or nothing) only that the body is
            live: either way its reservation does not lapse while it arrives."""
            await self._repo.update_upload(
                info.id, **({} if checksum else {"upload_offset": start + written})
            )

        verifier = checksum.new() if checksum else None
        failure = await self._stream(info.id, start, blocks, room, holder.progress, verifier, checkpoint)
        written = holder.progress.written
        if (
            checksum is not None
            and verifier is not None
            and (failure is not None or verifier.digest() != checksum.expected)
        ):
            await self._rollback(info, start)
            if failure is None:
                failure = errors.CHECKSUM_MISMATCH(
                    f"Upload-Checksum {checksum.algorithm} does not match the body; its {written} bytes "
                    f"were discarded, resend them"
                )
            written = 0
        info.offset = start + written
        if written or info.offset == info.length:  # an empty body keeps nothing alive
            await self._commit(info)
        if (
            failure is not None
        ):  # a failed write may have left bytes past the offset: check the store next time
            self._in_sync.pop(info.id, None)
        if written > 0:
            log.info(
                "Upload %s: Saved %s at offset %d (%s of %s)",
                info.id,
                mb(written),
                start,
                mb(info.offset),
                "?" if info.length is None else mb(info.length),
            )
        if failure is not None:
            raise_failure(failure)

    async def _stream(
        self,
        upload_id: str,
        offset: int,
        blocks: AsyncIterable[bytes],
        room: int,
        progress: WriteProgress,
        verifier=None,
        checkpoint: Callable[[int], Awaitable[None]] | None = None,
        part: int | None = None,
        store: Store | None = None,
    ) -> BaseException | None:
        """Writes at most `room` bytes of the body at offset; a checksum `verifier` sees each
        block in a thread of its own while the store writes it. Returns the failure instead of
        raising it: the caller decides what the bytes already on the store (progress.written)
        mean. The upload's sha256 is not computed here but in the one read that moves the
        completed file to durable storage (uploads/archive.py). With `part`, a store that writes
        numbered parts (PartWriter) stores the body as that part instead of at offset. `store`:
        another store than the upload store (a scratch folder)."""
        digest = _ParallelDigest(verifier, self._hash_pool) if verifier is not None else None
        metered = _metered(blocks, room, progress, checkpoint)
        failure: BaseException | None = None
        try:
            body = digest.feed(metered) if digest else metered
            store = store or self._store
            if part is not None and isinstance(store, PartWriter):
                await store.write_part(upload_id, part, body, progress)
            else:
                await store.write(upload_id, offset, body, progress)
        except StreamTooLarge:
            failure = errors.TOO_LARGE(f"The body passes the end of the upload at offset {offset + room}")
        except (Exception, asyncio.CancelledError) as exc:  # client gone, stream interrupted, disk error
            failure = exc
        if digest is not None:
            await digest.settle()
        self._counters.inc("received_bytes_total", max(progress.written, 0))
        return failure

    async def _rollback(self, info: UploadInfo, offset: int) -> None:
        if isinstance(self._store, Truncater):
            await self._store.truncate(info.id, offset)

    async def _commit(self, info: UploadInfo) -> None:
        expires = None if info.length == info.offset else self.expiry()
        info.expires_at, info.active_at = expires, utcnow()
        await self._repo.update_upload(info.id, upload_offset=info.offset, expires_at=expires)
        self._in_sync[info.id] = dataclasses.replace(info)

    async def _declare_length(self, info: UploadInfo, length: int) -> None:
        if info.length is not None:
            if info.length != length:
                raise errors.BAD_REQUEST(f"Upload-Length is already {info.length}; it cannot change")
            return
        self.check_length(length)
        if length < info.offset:
            raise errors.BAD_REQUEST(
                f"Upload-Length {length} is smaller than the bytes already received ({info.offset})"
            )
        async with self._reservations.claim(  # 507, or 413 past the owner's quota (bytes kept)
            info.owner_id,
            length - info.offset + await self._copies(info, length),
            counted=length - info.offset,
        ):
            info.active_at = utcnow()
            await self._repo.update_upload(info.id, length=length)
            if info.concat == "partial":  # the copy stays reserved in the final's length
                await self._repo.settle_final_lengths(info.id)
        info.length = length
        self._in_sync[info.id] = dataclasses.replace(info)  # the request may still fail before its write

    async def _copies(self, info: UploadInfo, length: int) -> int:
        """Space a partial upload will need again once copied into its final upload."""
        if info.concat == "partial" and await self._repo.finals_waiting_for(info.id):
            return length
        return 0

    async def _reconciled(self, info: UploadInfo) -> UploadInfo:
        """Make the recorded offset and the store agree (call under the lock). Bytes past
        the offset were never acknowledged (a crash mid-write) and are dropped where the store
        can (a file); a bucket's parts cannot lose bytes, and being whole and in order they are
        what the client sent there, so the offset moves on to them. Fewer bytes than the offset
        (a RAM disk lost in a reboot) move the offset back, so the client resends rather than
        the server claiming bytes it does not have."""
        known = self._cached(info.id)
        if info.status != "active" or (known is not None and known.offset == info.offset):
            return info
        size = await self._store.size(info.id)
        if size > info.offset and isinstance(self._store, Truncater):
            await self._store.truncate(info.id, info.offset)
        elif size != info.offset:  # more: whole parts of a bucket, in order, the bytes the client sent there
            log.warning(
                "Upload %s: store holds %d bytes but %d were recorded; offset moved %s",
                info.id,
                size,
                info.offset,
                "on" if size > info.offset else "back",
            )
            info.offset = size
            await self._repo.update_upload(info.id, upload_offset=size)
        self._in_sync[info.id] = dataclasses.replace(info)
        return info

    # -- completion ---------------------------------------------------------
    async def _finish(self, info: UploadInfo) -> None:
        """Marks the upload complete at info.offset bytes and publishes UploadCompleted inside
        that transaction (call under the lock). When the file must be durable first
        (durable_before_ack, or a declared digest to check), the durable copy is made and checked
        before: a mismatch fails the upload, with no event, and raises DIGEST_MISMATCH; a failed
        copy (a full disk) leaves the upload active with all its bytes, to complete again."""
        if isinstance(self._store, Finisher):
            await self._store.finish(info.id)
        if info.concat == "partial":  # it waits, until it expires, to be part of a final upload
            self._finished(info)
            info.status, info.expires_at = "complete", self.expiry()
            await self._repo.update_upload(
                info.id,
                upload_offset=info.offset,
                status="complete",
                completed_at=utcnow(),
                expires_at=info.expires_at,
            )
            log.info("Upload %s: partial upload complete - %s", info.id, mb(info.offset))
            for final_id in await self._repo.finals_waiting_for(info.id):
                self._spawn(self._assemble(final_id))
            return
        wanted = declared(info.metadata)
        sha256 = None
        if wanted or self._settings.durable_before_ack:
            sha256 = await self._durable_first(info, wanted)
        self._finished(info)
        async with self._repo.completing(info.id, info.offset, sha256) as record:
            await self._subscriber.recording(UploadCompleted(info, record))
        info.status, info.expires_at = "complete", None
        log.info("Upload %s: complete - %s total", info.id, mb(info.offset))
        crashpoints.reach("completed")
        if sha256 is not None:
            info.sha256 = sha256
            await self.archiver.release(info)
        self._subscriber.completed(info)

    def _finished(self, info: UploadInfo) -> None:
        self._reservations.forget()  # what it still reserved is free again
        self._in_sync.pop(info.id, None)
        self._counters.inc("uploads_total", event="finished")

    async def _durable_first(self, info: UploadInfo, wanted: dict[str, str]) -> str:
        """The durable copy, checked against the declared digests; its sha256."""
        try:
            digests = await self.archiver.preserve(info, wanted)
        except Exception as exc:  # a disk's OSError, a bucket's error: 503 with Retry-After, bytes kept
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.INSUFFICIENT_STORAGE(
                    "Durable storage is full: the upload keeps all its bytes but is not complete yet. Send the "
                    "completing request again later.",
                    headers={"Retry-After": "60"},
                ) from exc
            raise_failure(exc)
        if digests is None:  # bytes recorded but gone (a wiped RAM disk): the client resends them
            self._in_sync.pop(info.id, None)
            raise errors.STORE_UNAVAILABLE(headers={"Retry-After": "1"})
        problem = mismatch(wanted, digests)
        if problem is not None:
            await self._repo.update_upload(info.id, status="failed", expires_at=None)
            self._reservations.forget()
            self._in_sync.pop(info.id, None)
            await self.archiver.discard(info)
            log.warning("Upload %s: failed, %s", info.id, problem)
            raise errors.DIGEST_MISMATCH(
                f"Upload {info.id} failed: {problem}. Its bytes were discarded and no "
                f"batch was made; upload the file again"
            )
        return digests["sha256"]

    async def recover(self) -> None:
        """At start, what a stopped node left: completed uploads not yet durable move on, then
        unfinished completions (complete_unfinished), both in the background."""
        await self.archiver.recover()  # first: their RAM-disk files are still needed
        self._spawn(self.complete_unfinished())

    async def complete_unfinished(self) -> None:
        """Uploads that hold all their bytes but whose completion was never recorded complete
        now (or, if bytes are missing, move back to what is held): tus and IETF uploads at their
        length, legacy uploads with every chunk stored, finals whose partial uploads are
        complete. Each completes under its lock: nothing is done twice."""
        for upload_id in await self._repo.uploads_at_length():
            with recovering(upload_id):
                async with self._locks.hold(upload_id):
                    row = await self._repo.upload(upload_id)
                    if row is None or row.status != "active" or row.upload_offset != row.length:
                        continue
                    info = await self._reconciled(UploadInfo.from_row(row))
                    if info.offset == info.length:
                        await self._finish(info)
        for upload_id in await self._repo.legacy_uploads_with_all_chunks():
            with recovering(upload_id):
                row = await self._repo.upload(upload_id)
                if row is not None:
                    await self.complete_parts(UploadInfo.from_row(row))
        for final_id in await self._repo.active_finals():
            with recovering(final_id):
                await self._assemble(final_id)
        # parts of complete finals a stop left holding their bytes (freed after the answer)
        await concat.consume(self._repo, self._store, await self._repo.joined_parts_held())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Background work that outlives the request; awaited at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """At shutdown: let background work finish, then stop the hashing threads."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.archiver.drain()
        self._hash_pool.shutdown(wait=True)

    # -- numbered parts (legacy chunks, concatenation) -------------------------
    async def spool(self, blocks: AsyncIterable[bytes]) -> Chunk:
        """Stores a chunk whose destination is not known yet (its form fields come later)."""
        store = self._spool_store
        spool_id = SPOOL_PREFIX + secrets.token_hex(16)
        await store.create(spool_id)
        progress = WriteProgress()
        failure = await self._stream(spool_id, 0, blocks, self.max_chunk, progress, store=store)
        if failure is not None:
            await store.delete(spool_id)
            if isinstance(failure, errors.ServiceError) and failure.spec is errors.TOO_LARGE:
                raise too_large(progress.written + 1, self.max_chunk) from None
            raise_failure(failure)
        return Chunk(spool_id=spool_id, spool_size=progress.written)

    async def discard(self, chunk: Chunk) -> None:
        if chunk.spool_id:
            await self._spool_store.delete(chunk.spool_id)

    async def write_part(
        self, info: UploadInfo, index: int, chunk: Chunk, room: int
    ) -> tuple[int, int, int] | None:
        """Writes part `index` at index * chunk_size and records it, under a lock of its own:
        parts of one upload are written in parallel, while a retry of the same part waits and
        then finds it stored (None). Returns its size, the parts stored and their bytes."""
        offset = index * (info.chunk_size or 0)
        async with self._locks.hold(f"{info.id}/{index}") as holder:
            if await self._repo.has_chunk(info.id, index):
                return None
            if chunk.spool_id and chunk.spool_size > room:
                raise self._oversize(index, chunk.spool_size, room)
            if chunk.spool_id and self._spool_store is self._store and isinstance(self._store, RangeCopier):
                size = await self._store.copy_into(chunk.spool_id, info.id, offset)
                await self.discard(chunk)
            else:
                holder.arm(chunk.interrupt, chunk.received)
                blocks = (
                    read_chunks(self._spool_store.path(chunk.spool_id))  # type: ignore[attr-defined]
                    if chunk.spool_id
                    else chunk.blocks
                )
                assert blocks is not None
                failure = await self._stream(info.id, offset, blocks, room, holder.progress, part=index + 1)
                await self.discard(chunk)
                size = holder.progress.written
                if failure is not None:
                    if isinstance(failure, errors.ServiceError) and failure.spec is errors.TOO_LARGE:
                        raise self._oversize(index, size + 1, room) from None
                    raise_failure(failure)
            if chunk.spool_id and size != chunk.spool_size:  # the spool is gone (swept?) or cut short
                log.warning(
                    "Upload %s: chunk %d's spool held %d of its %d bytes",
                    info.id,
                    index,
                    size,
                    chunk.spool_size,
                )
                raise errors.STORE_UNAVAILABLE(headers={"Retry-After": "1"})
            total_chunks = info.total_chunks or 1
            if index and index < total_chunks - 1 and size != info.chunk_size:
                raise errors.BAD_REQUEST(
                    f"Chunk {index} has {size} bytes; every chunk but the last must have "
                    f"{info.chunk_size} bytes, like chunk 0"
                )
            count, total = await self._repo.record_chunk(info.id, index, size, self.expiry())
        log.info("Upload %s: Saved chunk %d/%d (%s)", info.id, index + 1, total_chunks, mb(size))
        return size, count, total

    def _oversize(self, index: int, size: int, room: int) -> errors.ServiceError:
        if room >= self.max_chunk or size > self.max_chunk:
            return too_large(size, self.max_chunk)
        return errors.BAD_REQUEST(
            f"Chunk {index} is larger than chunk 0 ({room} bytes); every chunk but the "
            f"last must have the size of chunk 0"
        )

    async def fix_part_size(self, info: UploadInfo, size: int) -> None:
        """Part 0 fixes the size of every part but the last: the parts to come are known now, and
        their space is reserved like a tus upload's (507), and counted against the owner's quota
        with part 0's: total_chunks x its size (413)."""
        total_chunks = info.total_chunks or 1
        if total_chunks > 1:
            if size == 0:
                raise errors.BAD_REQUEST("Chunk 0 is empty; every chunk but the last must hold data")
            if isinstance(self._store, PartWriter) and size < self._store.min_part_size:
                raise errors.BAD_REQUEST(
                    f"Chunk 0 has {size} bytes; this server stores chunks as S3 parts, so every chunk but "
                    f"the last must hold at least {self._store.min_part_size} bytes (send 50 MB chunks)"
                )
            if (total_chunks - 1) * size + 1 > self.max_upload_size:
                raise errors.TOO_LARGE(
                    f"{total_chunks} chunks of {size} bytes exceed the maximum upload size {self.max_upload_size}"
                )
        info.chunk_size = size
        self._reservations.forget()  # part 0's bytes, written unclaimed, count from the next sums on
        async with self._reservations.claim(info.owner_id, (total_chunks - 1) * size, verify=True):
            await self._repo.update_upload(info.id, chunk_size=size)

    async def set_kind(self, info: UploadInfo, upload_type: str, task_id: str | None) -> None:
        """The upload's type, known only after its bytes (a form field after the file)."""
        info.upload_type, info.task_id = upload_type, task_id
        await self._repo.update_upload(info.id, upload_type=upload_type, task_id=task_id)

    def reserve(self, owner_id: int, size: int) -> contextlib.AbstractAsyncContextManager[Claim]:
        """Space for a body of unknown size (507 past the user's share, 413 past their quota);
        grow it with metered()."""
        return self._reservations.claim(owner_id, size)

    async def complete_parts(
        self, info: UploadInfo, counts: tuple[int, int] | None = None
    ) -> tuple[UploadInfo, int]:
        """With all total_chunks parts stored (counted by the caller, or counted here), completes
        the upload at their total size; returns the upload and the parts stored."""
        count, total = counts or (0, 0)
        total_chunks = info.total_chunks or 1
        if count < total_chunks:  # counted inside the recording transaction: a part stored in
            count, total = await self._repo.chunk_totals(info.id)  # parallel may not have been visible
        if count < total_chunks:
            return info, count
        async with self._locks.hold(info.id):  # exactly one request completes the upload
            current = await self.reload(info.id)  # with what was declared since (a sha256 field)
            if current is None or current.is_complete:
                return current or info, count
            log.info("Upload %s: All %d chunks received, reassembling...", info.id, total_chunks)
            current.length = current.offset = total
            await self._repo.update_upload(info.id, length=total)
            log.info("Upload %s: Reassembly complete - %s total", info.id, mb(total))
            log.info("Upload %s: All chunks received, triggering batch processing", info.id)
            await self._finish(current)
            log.info("Upload %s: Cleaned up temp directory", info.id)
        return current, count

    # -- concatenation --------------------------------------------------------
    async def concatenate(self, user: Principal, partial_ids: list[str], **fields: Any) -> UploadInfo:
        """A final upload made of partial uploads (tus concatenation); assembled as soon as they
        are all complete, now or when the last one completes."""
        length: int | None = 0
        for partial_id in concat.distinct(partial_ids):
            try:
                partial = await self.get(partial_id, user)
            except errors.ServiceError as exc:
                raise errors.BAD_REQUEST(
                    f"Partial upload {partial_id} cannot be concatenated: {exc.message}"
                ) from None
            if partial.concat != "partial":
                raise errors.BAD_REQUEST(f"Upload {partial_id} was not created with Upload-Concat: partial")
            length = None if length is None or partial.length is None else length + partial.length
        used = await self._repo.finals_using(partial_ids)
        if again := await self._same_final(user, partial_ids, used):
            return again
        concat.check_unused(used)
        try:  # the space for the copy is checked like any creation's (507)
            info = await self.create(
                user,
                length=length,
                concat="final",
                parts=partial_ids,
                total_chunks=len(partial_ids),
                **fields,
            )
        except IntegrityError:  # another final took one of them meanwhile (a unique index)
            concat.check_unused(await self._repo.finals_using(partial_ids))
            raise
        return await self._assemble(info.id) or info

    async def _same_final(
        self, user: Principal, partial_ids: list[str], used: dict[str, str]
    ) -> UploadInfo | None:
        """The final these very parts, in this order, already make: a client that sends the
        final's creation again (its answer lost, or a reload) gets that final, assembled if it
        can be now, instead of a 400 that would fail an upload the server holds."""
        finals = set(used.values())
        if len(used) != len(partial_ids) or len(finals) != 1:
            return None
        final_id = finals.pop()
        if [p.id for p in await self._repo.parts_of(final_id)] != partial_ids:
            return None
        info = await self.get(final_id, user)
        if not info.is_complete:
            info = await self._assemble(final_id) or info
        return info

    async def _assemble(self, final_id: str) -> UploadInfo | None:
        async with self._locks.hold(final_id):
            info = await self.reload(final_id)
            if info is None or info.status != "active":
                return None
            parts = await self._repo.parts_of(final_id)
            if not await concat.assemble(self._repo, self._store, info, parts):
                return None
            await self._finish(info)
        self._spawn(concat.consume(self._repo, self._store, parts))
        return info

    # -- termination and expiry ---------------------------------------------
    async def terminate(self, upload_id: str, user: Principal) -> None:
        """An upload in progress (or a partial one) stops and its bytes go: its URL answers 410.
        A completed upload is deleted with its batch and every copy of its file: 404 after."""
        await self._owned(upload_id, user)
        async with self._locks.hold(upload_id):
            info = await self.get(upload_id, user)
            if info.is_complete and info.concat != "partial":
                await self._remover.remove(info, whole=True, by=user.id)
                self._forget(upload_id)
                return
            await self._drop(info.id, "terminated")

    async def retire(self, upload_id: str, whole: bool) -> bool:
        """Retention: a completed upload's file goes (its results stay), or the whole upload
        with its batch. False if it is not there to remove any more, or is busy (next pass)."""
        try:
            async with self._locks.hold(upload_id):
                row = await self._repo.upload(upload_id)
                kept = ("store", "durable") if not whole else ("store", "durable", "deleted", "lost")
                if row is None or row.status != "complete" or row.location not in kept:
                    return False
                await self._remover.remove(UploadInfo.from_row(row), whole=whole, by=None)
        except RemovalRefused:
            return False
        except errors.ServiceError as exc:
            if exc.spec is not errors.LOCKED:
                raise
            return False
        if whole:
            self._forget(upload_id)
        return True

    async def finish_removals(self) -> int:
        """Removals a crash interrupted (at start, and on every janitor pass)."""
        return await self._remover.finish_pending()

    def _forget(self, upload_id: str) -> None:
        self._in_sync.pop(upload_id, None)
        self._owners.pop(upload_id, None)

    async def abandon(self, info: UploadInfo) -> None:
        """An upload whose creating request failed (its first chunk, a direct upload's form):
        terminated, its bytes and its reservation gone."""
        await self._drop(info.id, "terminated")

    async def expire_due(self) -> int:
        """Remove incomplete uploads past their expiry; their URLs then answer 410."""
        count = 0
        for upload_id in await self._repo.expired_uploads(utcnow()):
            with contextlib.suppress(errors.ServiceError):  # being written right now: not idle
                async with self._locks.hold(upload_id):
                    row = await self._repo.upload(upload_id)
                    if (
                        row is not None
                        and row.expires_at is not None
                        and row.expires_at <= utcnow()
                        and (row.status == "active" or row.concat == "partial")
                    ):
                        await self._drop(upload_id, "expired")
                        count += 1
        return count

    async def _drop(self, upload_id: str, status: str) -> None:
        await self._repo.update_upload(upload_id, status=status, expires_at=None)
        await self._repo.release_parts(upload_id)  # a final's partials may join another final
        self._counters.inc("uploads_total", event=status)
        await self._store.delete(upload_id)
        self._reservations.forget()
        self._in_sync.pop(upload_id, None)
        log.info("Upload %s: %s, bytes removed", upload_id, status)


async def _metered(
    blocks: AsyncIterable[bytes],
    room: int,
    progress: WriteProgress,
    checkpoint: Callable[[int], Awaitable[None]] | None,
) -> AsyncIterator[bytes]:
    """Yields at most `room` bytes; calls checkpoint now and then with the bytes on the
    store, so a crash during a long body keeps most of what was acknowledged."""
    sent = 0
    last = time.monotonic()
    async for block in blocks:
        if sent + len(block) > room:
            if room - sent:
                yield block[: room - sent]
            raise StreamTooLarge()
        sent += len(block)
        yield block
        if checkpoint is not None and time.monotonic() - last >= COMMIT_EVERY:
            last = time.monotonic()
            await checkpoint(progress.written)


@contextlib.contextmanager
def recovering(upload_id: str) -> Iterator[None]:
    """Completing one upload at start: its failure is logged, and the next one is tried."""
    try:
        yield
    except errors.ServiceError as exc:
        log.warning("Upload %s: not completed on recovery: %s", upload_id, exc.message)
    except Exception:
        log.exception("Upload %s: not completed on recovery", upload_id)


def raise_failure(failure: BaseException):
    """The error a failed write answers with. What is neither ours (a ServiceError) nor the
    client's going away is the store's failing (a disk, a bucket): 503, bytes kept, resume."""
    if isinstance(failure, Interrupted):
        raise errors.INTERRUPTED() from None
    if isinstance(failure, (errors.ServiceError, asyncio.CancelledError, ConnectionError)):
        raise failure
    if isinstance(failure, OSError) and failure.errno in (errno.ENOSPC, errno.EDQUOT):
        log.warning("store full: %s", failure)
        raise errors.INSUFFICIENT_STORAGE(
            "The store is full: the bytes that fitted are kept. Resume from the offset a HEAD request "
            "reports once space is freed (retry later, or contact the administrator).",
            headers={"Retry-After": "60"},
        ) from failure
    log.warning("store write failed: %s: %s", type(failure).__name__, failure)
    raise errors.STORE_UNAVAILABLE(headers={"Retry-After": "5"}) from failure


GONE = {
    "expired": "Upload {} has expired",
    "terminated": "Upload {} was terminated",
    "failed": "Upload {} failed: the file did not match the digest declared when it was created; upload it again",
}


def _plausible_id(upload_id: str) -> bool:
    return len(upload_id) == 32 and all(c in "0123456789abcdef" for c in upload_id)
