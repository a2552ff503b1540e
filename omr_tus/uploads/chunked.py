"""The legacy chunk protocol, an adapter over the upload core's numbered parts.

Chunk 0 creates the upload and fixes the chunk size; chunk i then lands at
i * chunk_size of the upload's one file. So chunks after 0 may arrive in any order or
in parallel, a retried chunk is stored once, and completion copies nothing: the file
is whole the moment its last chunk is written. A chunk that arrived before the form
fields saying where it goes is spooled and then placed by the kernel (copy_file_range).
"""

from __future__ import annotations

import asyncio
import dataclasses

from .. import errors
from .model import Chunk, Principal, UploadInfo
from .service import UploadService


@dataclasses.dataclass
class ChunkReceipt:
    info: UploadInfo
    chunk_index: int
    chunks_received: int

    @property
    def complete(self) -> bool:
        return self.info.is_complete


@dataclasses.dataclass
class Stored:
    """A chunk on the store and recorded; the upload completes only once the request's other
    form fields are read and valid (a sha256 or is_final_chunk after the chunk): `received()`."""

    info: UploadInfo
    index: int
    counts: tuple[int, int] | None = None


class ChunkedUploads:
    def __init__(self, core: UploadService):
        self.core = core

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
        max_size = self.core.max_upload_size
        if total_chunks > max_size:
            raise errors.BAD_REQUEST(
                f"total_chunks {total_chunks} is more than an upload of the maximum size "
                f"({max_size} bytes) can have"
            )
        metadata = {"filename": filename or "", **({"sha256": sha256} if sha256 else {})}
        info = await self.core.create(
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
            stored = await self.core.write_part(info, 0, chunk, room=room or self.core.max_chunk)
            assert stored is not None  # a new upload has no chunk yet
            await self.core.fix_part_size(info, stored[0])
        except BaseException:
            await self.core.abandon(info)
            raise
        return info

    async def next(
        self, user: Principal, upload_id: str, index: int, total_chunks: int, chunk: Chunk
    ) -> Stored:
        info = await self.lookup(upload_id, user)
        if total_chunks != info.total_chunks:
            raise errors.BAD_REQUEST(
                f"total_chunks {total_chunks} does not match this upload's total_chunks {info.total_chunks}"
            )
        if not 0 <= index < total_chunks:
            raise errors.BAD_REQUEST(f"Invalid chunk_index {index} (total: {total_chunks})")
        stored = (
            None
            if info.is_complete
            else await self.core.write_part(info, index, chunk, room=info.chunk_size or 0)
        )
        if stored is None:  # a retry of a stored chunk: stored once, counted once; it completes
            await self._drain(chunk)  # the upload if the request that stored it could not
            return Stored(info, index)
        return Stored(info, index, stored[1:])

    async def lookup(self, upload_id: str, user: Principal) -> UploadInfo:
        try:
            info = await self.core.get(upload_id, user)
        except errors.ServiceError as exc:
            if exc.status in (404, 410):
                raise errors.NOT_FOUND(f"Upload {upload_id} not found. Please restart upload.") from None
            raise
        if info.protocol != "legacy" or info.chunk_size is None:
            raise errors.NOT_FOUND(f"Upload {upload_id} not found. Please restart upload.")
        return info

    async def received(
        self, info: UploadInfo, index: int, counts: tuple[int, int] | None = None
    ) -> ChunkReceipt:
        """With the chunks stored (counted by the caller, or counted here), the request that
        brings the last one completes the upload."""
        current, count = await self.core.complete_parts(info, counts)
        return ChunkReceipt(current, index, count)

    async def _drain(self, chunk: Chunk) -> None:
        if chunk.blocks is not None:
            async for _ in chunk.blocks:
                await asyncio.sleep(0)
        await self.core.discard(chunk)
