"""tus concatenation (and concatenation-unfinished) on the parts mechanism of the legacy
chunk API: a final upload's parts are partial uploads; each is placed at its offset by
the kernel (copy_file_range, all parts at once) and recorded as a chunk of the final, which
completes when every part is in place; the parts are deleted after. A final may be created
before its partials are complete. The steps the upload core (service.py) takes under the
final's lock, and after it."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence

from sqlalchemy import Row

from .. import errors
from ..db.repo import Repo
from ..store import RangeCopier, Store
from .model import UploadInfo
from .reservations import mb

log = logging.getLogger("omr_tus.uploads")


def distinct(partial_ids: list[str]) -> list[str]:
    """The partial uploads a final names: at least one, none twice."""
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
    return partial_ids


def check_unused(used: dict[str, str]) -> None:
    """`used`: partial upload -> the final upload it is already part of."""
    if used:
        partial_id, final_id = next(iter(used.items()))
        raise errors.BAD_REQUEST(
            f"Partial upload {partial_id} is already part of final upload {final_id}; "
            "each partial upload can be part of one final upload, once"
        )


async def assemble(repo: Repo, store: Store, info: UploadInfo, parts: Sequence[Row]) -> bool:
    """Copies the complete partial uploads into the final one (under its lock) and records
    its length; False while one is incomplete, gone or lost."""
    if any(p.status != "complete" for p in parts):
        if any(p.status in ("terminated", "expired") for p in parts):
            log.warning("Upload %s: a partial upload is gone; the final cannot complete", info.id)
        return False
    lost = [p.id for p in parts if await store.size(p.id) != p.upload_offset]
    if lost:  # a wiped RAM disk: never assemble a file from bytes that are gone
        for part_id in lost:
            await repo.update_upload(part_id, location="lost", upload_offset=0)
        log.error(
            "Upload %s: partial uploads %s lost their bytes; the final cannot be assembled",
            info.id,
            ", ".join(lost),
        )
        return False
    assert isinstance(store, RangeCopier)  # concatenation is offered on such stores only
    # The parts are copied side by side (each at its own offset, in the store's threads): the
    # final's creation answers once they are all in place, and a browser sends its parts at once.
    offsets = list(itertools.accumulate((p.upload_offset for p in parts), initial=0))
    sizes = await asyncio.gather(*(store.copy_into(p.id, info.id, at) for p, at in zip(parts, offsets)))
    short = [p.id for p, size in zip(parts, sizes) if size != p.upload_offset]
    if short:  # a part removed while it was copied: never complete a final with a hole
        log.error(
            "Upload %s: partial uploads %s changed while copied; not completed", info.id, ", ".join(short)
        )
        return False
    for index, size in enumerate(sizes):
        await repo.record_chunk(info.id, index, size)
    offset = sum(sizes)
    info.offset = info.length = offset
    await repo.update_upload(info.id, length=offset)
    log.info("Upload %s: %d partial uploads concatenated - %s total", info.id, len(parts), mb(offset))
    return True


async def consume(repo: Repo, store: Store, parts: Sequence[Row]) -> None:
    """The parts of a completed final upload, copied into it: their bytes go (in the
    background: freeing a GiB of RAM disk takes a good part of a second, which the answer
    that completes the upload need not wait for)."""
    for part in parts:
        if not await repo.finals_waiting_for(part.id):
            await store.delete(part.id)
            await repo.update_upload(part.id, location="consumed")
