"""The SQL of deletion and retention, a sibling of repo.py: removing a completed upload (whole,
or only its file), the audit of deletions, what retention finds due, and the one-node-at-a-time
lock of the retention pass.

A removal is two steps so that no crash leaves bytes nobody will remove: a transaction marks
the upload (status `deleted`: a tombstone; or location `deleting`: only the file goes) together
with what subscribers record (the batch's rows, the audit row); once every copy of the bytes is
gone, `removed` deletes the tombstone (or sets location `deleted`). What a crash left marked is
found by `pending` and finished."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Row, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .models import Batch, Deletion, Upload, UploadPart, User, utcnow

uploads = Upload.__table__
batches = Batch.__table__
parts = UploadPart.__table__
deletions = Deletion.__table__
users = User.__table__
FINISHED = ("completed", "failed")  # batches retention may touch: no worker needs their file


class RemovalRecord:
    """Writes that belong to a removal, in the transaction that marks it (RemovalRepo.removing)."""

    def __init__(self, conn: AsyncConnection, now: dt.datetime):
        self._conn, self.now = conn, now

    async def finished_batch(self, upload_id: str) -> Row | None:
        """The upload's batch if no worker needs its file (completed or failed), locked until
        the removal commits, so that a reprocess cannot start meanwhile (PostgreSQL: the row
        lock; SQLite: the removal already holds the one write lock)."""
        row = (
            await self._conn.execute(
                select(batches).where(batches.c.upload_id == upload_id).with_for_update()
            )
        ).first()
        return row if row is not None and row.status in FINISHED else None

    async def drop_batch(self, upload_id: str) -> Row | None:
        """Deletes the upload's batch (its sheets, answers and corrections go with it) and
        returns the row it had."""
        deleted = await self._conn.execute(
            delete(batches).where(batches.c.upload_id == upload_id).returning(*batches.c)
        )
        return deleted.first()

    async def file_deleted(self, upload_id: str) -> Row | None:
        """The batch keeps its results and says when its file went; returns its row."""
        marked = await self._conn.execute(
            update(batches)
            .where(batches.c.upload_id == upload_id)
            .values(file_deleted_at=self.now, updated_at=self.now)
            .returning(*batches.c)
        )
        return marked.first()

    async def audit(self, **values: Any) -> None:
        await self._conn.execute(insert(deletions).values(deleted_at=self.now, **values))


class RemovalRepo:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.asynccontextmanager
    async def removing(self, upload_id: str, whole: bool) -> AsyncIterator[RemovalRecord]:
        """Marks the completed upload for removal in a transaction open for the block."""
        now = utcnow()
        mark = dict(status="deleted") if whole else dict(location="deleting")
        async with self.engine.begin() as conn:
            await conn.execute(
                update(uploads).where(uploads.c.id == upload_id).values(updated_at=now, **mark)
            )
            yield RemovalRecord(conn, now)

    async def removed(self, upload_id: str, whole: bool) -> None:
        """Every copy of the bytes is gone: the tombstone goes, with the partial uploads joined
        into it (each belongs to one final); or the upload says its file is deleted."""
        async with self.engine.begin() as conn:
            if not whole:
                await conn.execute(
                    update(uploads)
                    .where(uploads.c.id == upload_id, uploads.c.location == "deleting")
                    .values(location="deleted", updated_at=utcnow())
                )
                return
            partials = select(parts.c.partial_id).where(parts.c.final_id == upload_id).scalar_subquery()
            await conn.execute(delete(uploads).where(uploads.c.id.in_(partials)))
            await conn.execute(
                delete(uploads).where(uploads.c.id == upload_id, uploads.c.status == "deleted")
            )

    async def partials_of(self, upload_id: str) -> list[str]:
        async with self.autocommit.connect() as conn:
            rows = await conn.execute(select(parts.c.partial_id).where(parts.c.final_id == upload_id))
            return [row.partial_id for row in rows]

    async def pending(self, limit: int = 500) -> Sequence[Row]:
        """(id, whole) of removals a crash interrupted: their bytes may still be somewhere."""
        async with self.autocommit.connect() as conn:
            rows = await conn.execute(
                select(uploads.c.id, (uploads.c.status == "deleted").label("whole"))
                .where(or_(uploads.c.status == "deleted", uploads.c.location == "deleting"))
                .limit(limit)
            )
            return rows.all()

    async def due(self, before: dt.datetime, files_only: bool, limit: int = 500) -> Sequence[str]:
        """Upload ids of finished batches completed before `before`: those whose file is still
        kept (files_only), or every one of them."""
        where = [batches.c.status.in_(FINISHED), batches.c.completed_at < before]
        if files_only:
            where.append(uploads.c.location.in_(("store", "durable")))
        async with self.autocommit.connect() as conn:
            rows = await conn.execute(
                select(uploads.c.id)
                .select_from(batches.join(uploads, uploads.c.id == batches.c.upload_id))
                .where(uploads.c.status == "complete", and_(*where))
                .order_by(batches.c.completed_at)
                .limit(limit)
            )
            return [row.id for row in rows]

    async def audit_rows(self, limit: int, offset: int) -> tuple[Sequence[Row], int]:
        """The audit, newest first, with the names of the owner and of who deleted."""
        owner, by = users.alias("owner"), users.alias("by")
        async with self.autocommit.connect() as conn:
            rows = await conn.execute(
                select(deletions, owner.c.username.label("owner"), by.c.username.label("deleted_by_name"))
                .outerjoin(owner, owner.c.id == deletions.c.owner_id)
                .outerjoin(by, by.c.id == deletions.c.deleted_by)
                .order_by(deletions.c.deleted_at.desc(), deletions.c.id.desc())
                .limit(limit)
                .offset(offset)
            )
            total = await conn.scalar(select(func.count()).select_from(deletions))
            return rows.all(), int(total or 0)

    @contextlib.asynccontextmanager
    async def exclusively(self, key: int) -> AsyncIterator[bool]:
        """True for the one node that holds `key` now (a PostgreSQL advisory lock held on a
        connection of its own for the block); False on the others. SQLite serves one node."""
        if self.engine.dialect.name != "postgresql":
            yield True
            return
        async with self.autocommit.connect() as conn:  # a session lock: no transaction held open
            got = bool(await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
            try:
                yield got
            finally:
                if got:
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
