"""What the protocol layers see of an upload and of the user asking."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterable, Callable
from typing import Any

from sqlalchemy import Row

UPLOAD_TYPES = ("zip_with_qr", "zip_no_qr", "images")
TYPES_NEEDING_TASK = ("zip_no_qr", "images")


@dataclasses.dataclass(frozen=True)
class Principal:
    id: int
    username: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Interrupted(Exception):
    """Raised into a writer's body stream when a newer request takes its upload over."""


@dataclasses.dataclass
class Chunk:
    """A numbered part's body: streamed from the request, or already spooled on the store."""

    blocks: AsyncIterable[bytes] | None = None
    interrupt: Callable[[], None] = lambda: None
    received: Callable[[], int] | None = None  # bytes of the request so far (the client's activity)
    spool_id: str | None = None
    spool_size: int = 0


@dataclasses.dataclass
class UploadInfo:
    id: str
    owner_id: int
    protocol: str
    length: int | None
    offset: int
    metadata: dict[str, Any]
    raw_metadata: str | None
    filename: str | None
    upload_type: str
    task_id: str | None
    status: str
    location: str
    sha256: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    total_chunks: int | None = None
    chunk_size: int | None = None
    concat: str | None = None
    batch_id: str | None = None
    active_at: dt.datetime | None = None  # last change (a byte, a length): when its reservation lapses

    @classmethod
    def from_row(cls, row: Row) -> UploadInfo:
        return cls(
            id=row.id,
            owner_id=row.owner_id,
            protocol=row.protocol,
            length=row.length,
            offset=row.upload_offset,
            metadata=dict(row.upload_metadata or {}),
            raw_metadata=row.raw_metadata,
            filename=row.filename,
            upload_type=row.upload_type,
            task_id=row.task_id,
            status=row.status,
            location=row.location,
            sha256=row.sha256,
            created_at=row.created_at,
            expires_at=row.expires_at,
            total_chunks=row.total_chunks,
            chunk_size=row.chunk_size,
            concat=row.concat,
            active_at=row.updated_at,
        )

    @property
    def is_complete(self) -> bool:
        return self.status == "complete"

    @property
    def file_deleted(self) -> bool:
        """Retention removed the completed file; the upload and its results stay."""
        return self.location in ("deleting", "deleted")

    @property
    def remaining(self) -> int | None:
        return None if self.length is None else self.length - self.offset


# What a batch says, and what a request for its upload answers, when the completed file's
# bytes are gone (the RAM disk was wiped before they reached durable storage).
LOST = "the file was lost before it reached durable storage; upload it again"
