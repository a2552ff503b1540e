"""The legacy chunk protocol over the upload service.

Chunk 0 creates the upload and fixes the chunk size; chunk i then lands at
i * chunk_size of the upload's one file. So chunks after 0 may arrive in any order or
in parallel, a retried chunk is stored once, and completion copies nothing: the file
is whole the moment its last chunk is written. A chunk that arrived before the form
fields saying where it goes is spooled and then placed by the kernel (copy_file_range).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterable, Callable

from .. import errors
from ..store import LocalStore, PartWriter, RangeCopier, WriteProgress
from ..store.files import read_chunks
from .model import Principal, UploadInfo
from .service import UploadService, mb, raise_failure, recovering

log = logging.getLogger("omr_tus.uploads")
MAX_CHUNK = 100 * 1024 * 1024
# A spooled chunk's name: never an upload id, so the sweeper ages spools apart from uploads.
SPOOL_PREFIX = "spool-"


@dataclasses.dataclass
class ChunkReceipt:
    info: UploadInfo
    chunk_index: int
    chunks_received: int

    @property
    def complete(self) -> bool:
        return self.info.is_complete


@dataclasses.dataclass
class Chunk:
    """A chunk's body: streamed from the request, or already spooled on the store."""

    blocks: AsyncIterable[bytes] | None = None
    interrupt: Callable[[], None] = lambda: None
    received: Callable[[], int] | None = None  # bytes of the request so far (the client's activity)
    spool_id: str | None = None
    spool_size: int = 0


def too_large(size: int, limit: int = MAX_CHUNK) -> errors.ServiceError:
    return errors.TOO_LARGE(f"Chunk size {size} exceeds maximum {limit}")


@dataclasses.dataclass
class Stored:
    """A chunk on the store and recorded; the upload completes only once the request's other
    form fields are read and valid (a sha256 or is_final_chunk after the chunk): `received()`."""

    info: UploadInfo
    index: int
    counts: tuple[int, int] | None = None


class ChunkedUploads:
    def __init__(self, service: UploadService, scratch: LocalStore, max_chunk: int = MAX_CHUNK):
        self.service = service
        self.max_chunk = max_chunk
        # Chunks that arrive before their form fields wait on the store itself when it can place
        # them later without the bytes passing through Python; else in a local scratch folder.
        self.spool_store = service.store if isinstance(service.store, RangeCopier) else scratch

    # -- spooling -----------------------------------------------------------
    async def spool(self, blocks: AsyncIterable[bytes]) -> Chunk:
        """Stores a chunk whose destination is not known yet (its form fields come later)."""
        store = self.spool_store
        spool_id = SPOOL_PREFIX + secrets.token_hex(16)
        await store.create(spool_id)
        progress = WriteProgress()
        failure = await self.service.stream(spool_id, 0, blocks, self.max_chunk, progress, store=store)
        if failure is not None:
            await store.delete(spool_id)
            if isinstance(failure, errors.ServiceError) and failure.spec is errors.TOO_LARGE:
                raise too_large(progress.written + 1, self.max_chunk) from None
            raise_failure(failure)
        return Chunk(spool_id=spool_id, spool_size=progress.written)

    async def discard(self, chunk: Chunk) -> None:
        if chunk.spool_id:
            await self.spool_store.delete(chunk.spool_id)

    # -- chunks -------------------------------------------------------------
    async def start(
        self,
        user: Principal,
        chunk: Chunk,
        *,
        total_chunks: int,
        filename: str | None,
        upload_type: str,
        task_id: str | None,
        room: int | None = None,
        sha256: str | None = None,
    ) -> UploadInfo:
        """Creates the upload from its chunk 0, which fixes the chunk size. `sha256`: the whole
        file's, declared by the client (checked hex), verified at completion."""
        max_size = self.service.settings.max_upload_size
        if total_chunks > max_size:
            raise errors.BAD_REQUEST(
                f"total_chunks {total_chunks} is more than an upload of the maximum size "
                f"({max_size} bytes) can have"
            )
        metadata = {"filename": filename or "", **({"sha256": sha256} if sha256 else {})}
        info = await self.service.create(
            user,
            length=None,
            metadata=metadata,
            raw_metadata=None,
            filename=filename,
            upload_type=upload_type,
            task_id=task_id,
            protocol="legacy",
            total_chunks=total_chunks,
        )
        try:
            size, *_ = await self._put(info, 0, chunk, room=room or self.max_chunk)
            if total_chunks > 1:
                if size == 0:
                    raise errors.BAD_REQUEST("Chunk 0 is empty; every chunk but the last must hold data")
                store = self.service.store
                if isinstance(store, PartWriter) and size < store.min_part_size:
                    raise errors.BAD_REQUEST(
                        f"Chunk 0 has {size} bytes; this server stores chunks as S3 parts, so every chunk but "
                        f"the last must hold at least {store.min_part_size} bytes (send 50 MB chunks)"
                    )
                if (total_chunks - 1) * size + 1 > max_size:
                    raise errors.TOO_LARGE(
                        f"{total_chunks} chunks of {size} bytes exceed the maximum upload size {max_size}"
                    )
            info.chunk_size = size
            # the chunks to come are known now: their space is reserved like a tus upload's (507)
            async with self.service.reservations.claim(user.id, (total_chunks - 1) * size):
                await self.service.repo.update_upload(info.id, chunk_size=size)
        except BaseException:
            await self.abandon(info)
            raise
        return info

    async def abandon(self, info: UploadInfo) -> None:
        await self.service.store.delete(info.id)
        await self.service.repo.update_upload(info.id, status="terminated")

    async def next(
        self, user: Principal, upload_id: str, index: int, total_chunks: int, chunk: Chunk
    ) -> Stored:
        info = await self.lookup(upload_id, user)
        if total_chunks != info.total_chunks:
            raise errors.BAD_REQUEST(
                f"total_chunks {total_chunks} does not match this upload's total_chunks {info.total_chunks}"
            )
        if not 0 <= index < info.total_chunks:
            raise errors.BAD_REQUEST(f"Invalid chunk_index {index} (total: {info.total_chunks})")
        stored = None if info.is_complete else await self._put(info, index, chunk, room=info.chunk_size)
        if stored is None:  # a retry of a stored chunk: stored once, counted once; it completes
            await self._drain(chunk)  # the upload if the request that stored it could not
            return Stored(info, index)
        return Stored(info, index, stored[1:])

    async def lookup(self, upload_id: str, user: Principal) -> UploadInfo:
        try:
            info = await self.service.get(upload_id, user)
        except errors.ServiceError as exc:
            if exc.status in (404, 410):
                raise errors.NOT_FOUND(f"Upload {upload_id} not found. Please restart upload.") from None
            raise
        if info.protocol != "legacy" or info.chunk_size is None:
            raise errors.NOT_FOUND(f"Upload {upload_id} not found. Please restart upload.")
        return info

    async def _put(
        self, info: UploadInfo, index: int, chunk: Chunk, room: int
    ) -> tuple[int, int, int] | None:
        """Writes chunk `index` at its place and records it, under a lock of its own: chunks
        of one upload are written in parallel, while a retry of the same chunk waits and
        then finds it stored (None)."""
        service = self.service
        offset = index * (info.chunk_size or 0)
        async with service.locks.hold(f"{info.id}/{index}") as holder:
            if await service.repo.has_chunk(info.id, index):
                return None
            if chunk.spool_id and chunk.spool_size > room:
                raise self._oversize(index, chunk.spool_size, room)
            if chunk.spool_id and self.spool_store is service.store:
                size = await service.store.copy_into(chunk.spool_id, info.id, offset)
                await self.discard(chunk)
            else:
                holder.arm(chunk.interrupt, chunk.received)
                blocks = (
                    read_chunks(self.spool_store.path(chunk.spool_id)) if chunk.spool_id else chunk.blocks
                )
                failure = await service.stream(info.id, offset, blocks, room, holder.progress, part=index + 1)
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
            if index and index < info.total_chunks - 1 and size != info.chunk_size:
                raise errors.BAD_REQUEST(
                    f"Chunk {index} has {size} bytes; every chunk but the last must have "
                    f"{info.chunk_size} bytes, like chunk 0"
                )
            count, total = await service.repo.record_chunk(info.id, index, size, service.expiry())
        log.info("Upload %s: Saved chunk %d/%d (%s)", info.id, index + 1, info.total_chunks, mb(size))
        return size, count, total

    def _oversize(self, index: int, size: int, room: int) -> errors.ServiceError:
        if room >= self.max_chunk or size > self.max_chunk:
            return too_large(size, self.max_chunk)
        return errors.BAD_REQUEST(
            f"Chunk {index} is larger than chunk 0 ({room} bytes); every chunk but the "
            f"last must have the size of chunk 0"
        )

    async def received(
        self, info: UploadInfo, index: int, counts: tuple[int, int] | None = None
    ) -> ChunkReceipt:
        """With the chunks stored (counted by the caller, or counted here), the request that
        brings the last one completes the upload."""
        service = self.service
        count, total = counts or (0, 0)
        if count < info.total_chunks:  # counted inside the recording transaction: a chunk stored in
            count, total = await service.repo.chunk_totals(info.id)  # parallel may not have been visible
        if count < info.total_chunks:
            return ChunkReceipt(info, index, count)
        async with service.locks.hold(info.id):  # exactly one request completes the upload
            current = await service.reload(info.id)  # with what was declared since (a sha256 field)
            if current.is_complete:
                return ChunkReceipt(current, index, count)
            log.info("Upload %s: All %d chunks received, reassembling...", info.id, info.total_chunks)
            current.length = current.offset = total
            await service.repo.update_upload(info.id, length=total)
            log.info("Upload %s: Reassembly complete - %s total", info.id, mb(total))
            log.info("Upload %s: All chunks received, triggering batch processing", info.id)
            await service.finish(current)
            log.info("Upload %s: Cleaned up temp directory", info.id)
        return ChunkReceipt(current, index, count)

    async def complete_unfinished(self) -> None:
        """At start: uploads whose last chunk was stored but not completed (the process died
        in between, or the completion failed and the client gave up) complete now."""
        for upload_id in await self.service.repo.legacy_uploads_with_all_chunks():
            with recovering(upload_id):
                row = await self.service.repo.upload(upload_id)
                if row is not None:
                    info = UploadInfo.from_row(row)
                    await self.received(info, info.total_chunks - 1)

    async def _drain(self, chunk: Chunk) -> None:
        if chunk.blocks is not None:
            async for _ in chunk.blocks:
                await asyncio.sleep(0)
        await self.discard(chunk)
