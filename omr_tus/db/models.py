"""SQLAlchemy 2 typed models. Every schema change gets its own Alembic revision in omr_tus/migrations/."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    if TYPE_CHECKING:
        # Every model here maps one Table (DeclarativeBase types it as any FromClause),
        # and the repository builds Core statements on it.
        __table__: ClassVar[Table]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    # Bumped on password change: tokens carry it, so older tokens stop working.
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When a worker last claimed sheets of theirs: batches take turns by it (repo.in_turn).
    last_served_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set by an admin: a disabled user cannot log in, and disabling revokes their tokens.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Bytes the user may keep stored (None: no limit); the upload core enforces it at creation.
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Upload(Base):
    """One resumable upload, whichever protocol created it (tus or the legacy chunk API)."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str] = mapped_column(String(16), default="tus")
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: deferred
    upload_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    upload_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    raw_metadata: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    filename: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    upload_type: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # active -> complete | terminated | expired | failed; complete -> deleted (a tombstone kept
    # until every copy of the file is removed, then the row goes)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    # store: still on the in-progress store (RAM disk); durable: moved to the data dir;
    # deleting -> deleted: retention removes the file of a complete upload, its results stay
    location: Mapped[str] = mapped_column(String(16), default="store")
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Legacy chunked uploads: chunk i lands at i * chunk_size (chunk 0 sets the size).
    total_chunks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chunk_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # tus concatenation: "partial" or "final" (None for an ordinary upload)
    concat: Mapped[str | None] = mapped_column(String(8), nullable=True)


class UploadChunk(Base):
    """A chunk of a legacy upload that is fully on the store; retries never add a second row."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    chunk_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class UploadPart(Base):
    """Part i of a final (concatenated) upload is the partial upload partial_id. Once
    copied into the final, the part is recorded in upload_chunks like a legacy chunk."""

    __tablename__ = "upload_parts"

    final_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    part_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    # unique: a partial upload is part of one final upload, once
    partial_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), index=True, unique=True
    )


class Batch(Base):
    """What a completed upload becomes: the unit the OMR pipeline processes."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upload_type: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    # uploaded -> processing -> completed | failed
    status: Mapped[str] = mapped_column(String(16), default="uploaded", index=True)
    total_sheets: Mapped[int] = mapped_column(Integer, default=0)
    processed_sheets: Mapped[int] = mapped_column(Integer, default=0)
    failed_sheets: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # ZIP entries that are not sheets: [{"entry": name, "reason": why}]
    skipped: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # the first 1,000 of them
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # all of them
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # A worker that is ingesting the batch (listing its pages) holds it until lease_expires.
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When a worker last claimed sheets of this batch: batches (and their owners) take turns.
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When retention removed the file (OMR_TUS_KEEP_FILES_DAYS); the results stay.
    file_deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Task(Base):
    """An exam: its sheet template (OMRChecker template.json plus markers and qr) and answer key."""

    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    answer_key: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # evaluation.json
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # OMRChecker config.json
    # Bumped whenever what scores depend on changes (key, template, config, assets): a sheet
    # scored under an older version is being rescored (sheets.key_version).
    key_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TaskAsset(Base):
    """A file a task's template or evaluation names (marker image, reference image, answer CSV)."""

    __tablename__ = "task_assets"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Sheet(Base):
    """One page of a batch: claimed by a worker under a lease, read, and its answers stored."""

    __tablename__ = "sheets"
    # (batch_id, status): a batch's pending sheets are found without walking its finished ones
    __table_args__ = (
        UniqueConstraint("batch_id", "source", "page"),
        Index("ix_sheets_batch_status", "batch_id", "status"),
        # a task's sheets scored under an older key are found by a range scan (rescoring)
        Index("ix_sheets_task_key", "task_id", "key_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(1024))
    page: Mapped[int] = mapped_column(Integer)
    # pending -> ok | needs_review | failed
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    task_id: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    student_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    # the tasks.key_version `score` was computed under (lower than the task's: being rescored)
    key_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    alignment_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Answer(Base):
    """One output column of one sheet: a row per answer, so admins can query them with SQL."""

    __tablename__ = "answers"

    sheet_id: Mapped[int] = mapped_column(ForeignKey("sheets.id", ondelete="CASCADE"), primary_key=True)
    column: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    flags: Mapped[str] = mapped_column(String(64), default="")  # comma-separated: blank, multiple, ambiguous
    confidence: Mapped[float] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer, default=0)  # the column's place in the template's output


class Correction(Base):
    """An admin's answer for one column of a sheet. It is kept apart from `answers` so that
    reading the sheet again (which replaces its answers) never loses it."""

    __tablename__ = "corrections"

    sheet_id: Mapped[int] = mapped_column(ForeignKey("sheets.id", ondelete="CASCADE"), primary_key=True)
    column: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    corrected_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    corrected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginFailure(Base):
    """Login attempts not (yet) proven good, per key: `user:<lower-case name>` (known user or
    not) and `address:<client address>`, shared by every node, so a guesser gains nothing by
    spreading attempts over them (auth.LoginThrottle). The column keeps its first name."""

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class LoginAddress(Base):
    """Where a user has logged in successfully (a user key and an address key as in
    login_failures): guesses made elsewhere never hold that address back (OWASP's known
    device), so nobody can keep a user out from where they work. Forgotten when unused."""

    __tablename__ = "login_addresses"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(255), primary_key=True)
    last_login: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Deletion(Base):
    """The audit of deletions: who (None: retention) removed which batch or file, when, and
    how many bytes. No foreign keys: the row outlives what it names."""

    __tablename__ = "deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    what: Mapped[str] = mapped_column(String(16))  # "batch" (everything) or "file" (results kept)
    batch_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    upload_id: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(String(16))  # "request" or "retention"
    filename: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger)
    deleted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
