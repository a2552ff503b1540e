"""tus concatenation (and concatenation-unfinished) on the parts mechanism of the legacy
chunk API: a final upload's parts are partial uploads; each is placed at its offset by
the kernel (copy_file_range) and recorded as a chunk of the final, which completes when
every part is in place. A final may be created before its partials are complete."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError

from .. import errors
from .model import Principal, UploadInfo
from .service import UploadService, mb, recovering

log = logging.getLogger("omr_tus.uploads")


class Concatenation:
    def __init__(self, service: UploadService):
        self.service = service
        service.partial_hooks.append(self.partial_done)

    async def create_final(self, user: Principal, partial_ids: list[str], **fields: Any) -> UploadInfo:
        if not partial_ids:
            raise errors.BAD_REQUEST("Upload-Concat: final needs at least one partial upload URL")
        seen: set[str] = set()
        for partial_id in partial_ids:
            if partial_id in seen:
                raise errors.BAD_REQUEST(
                    f"Upload-Concat names partial upload {partial_id} twice; each partial "
                    "upload can be part of one final upload, once"
                )
            seen.add(partial_id)
        length = 0
        for partial_id in partial_ids:
            try:
                partial = await self.service.get(partial_id, user)
            except errors.ServiceError as exc:
                raise errors.BAD_REQUEST(
                    f"Partial upload {partial_id} cannot be concatenated: {exc.message}"
                ) from None
            if partial.concat != "partial":
                raise errors.BAD_REQUEST(f"Upload {partial_id} was not created with Upload-Concat: partial")
            length = None if length is None or partial.length is None else length + partial.length
        await self._check_unused(partial_ids)
        try:  # the space for the copy is checked like any creation's (507)
            info = await self.service.create(
                user,
                length=length,
                concat="final",
                parts=partial_ids,
                total_chunks=len(partial_ids),
                **fields,
            )
        except IntegrityError:  # another final took one of them meanwhile (a unique index)
            await self._check_unused(partial_ids)
            raise
        return await self.assemble_if_ready(info.id) or info

    async def _check_unused(self, partial_ids: list[str]) -> None:
        used = await self.service.repo.finals_using(partial_ids)
        if used:
            partial_id, final_id = next(iter(used.items()))
            raise errors.BAD_REQUEST(
                f"Partial upload {partial_id} is already part of final upload {final_id}; "
                "each partial upload can be part of one final upload, once"
            )

    async def partial_done(self, partial: UploadInfo) -> None:
        for final_id in await self.service.repo.finals_waiting_for(partial.id):
            self.service.spawn(self.assemble_if_ready(final_id))

    async def complete_unfinished(self) -> None:
        """At start: finals whose partial uploads were complete when a node stopped mid-assembly
        (copied, perhaps recorded, never finished) are assembled again."""
        for final_id in await self.service.repo.active_finals():
            with recovering(final_id):
                await self.assemble_if_ready(final_id)

    async def assemble_if_ready(self, final_id: str) -> UploadInfo | None:
        service = self.service
        async with service.locks.hold(final_id):
            info = await service.reload(final_id)
            if info is None or info.status != "active":
                return None
            parts = await service.repo.parts_of(final_id)
            if any(p.status != "complete" for p in parts):
                if any(p.status in ("terminated", "expired") for p in parts):
                    log.warning("Upload %s: a partial upload is gone; the final cannot complete", final_id)
                return None
            lost = [p.id for p in parts if await service.store.size(p.id) != p.upload_offset]
            if lost:  # a wiped RAM disk: never assemble a file from bytes that are gone
                for part_id in lost:
                    await service.repo.update_upload(part_id, location="lost", upload_offset=0)
                log.error(
                    "Upload %s: partial uploads %s lost their bytes; the final cannot be assembled",
                    final_id,
                    ", ".join(lost),
                )
                return None
            offset = 0
            for index, part in enumerate(parts):
                size = await service.store.copy_into(part.id, final_id, offset)
                await service.repo.record_chunk(final_id, index, size)
                offset += size
            info.offset = info.length = offset
            await service.repo.update_upload(final_id, length=offset)
            log.info(
                "Upload %s: %d partial uploads concatenated - %s total", final_id, len(parts), mb(offset)
            )
            await service.finish(info)
        for part in parts:
            if not await service.repo.finals_waiting_for(part.id):
                await service.store.delete(part.id)
                await service.repo.update_upload(part.id, location="consumed")
        return info
