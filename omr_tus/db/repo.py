"""All SQL of the application in one place (procrastinate's "manager"): users, uploads, batches.

Core statements rather than ORM sessions: the upload hot paths (create, commit an
offset) are single statements, and this keeps them cheap on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Row, Table, and_, case, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .models import (
    Answer,
    Batch,
    Correction,
    LoginAddress,
    LoginFailure,
    Sheet,
    Task,
    TaskAsset,
    Upload,
    UploadChunk,
    UploadPart,
    User,
    utcnow,
)
from .scores import SCORED, rescoring
from .usage import committed_bytes, stored_bytes

if TYPE_CHECKING:
    from ..batches.ingest import Listing

users = User.__table__
uploads = Upload.__table__
batches = Batch.__table__
chunks = UploadChunk.__table__
parts = UploadPart.__table__
tasks = Task.__table__
task_assets = TaskAsset.__table__
corrections = Correction.__table__
sheets = Sheet.__table__
answers = Answer.__table__
login_failures = LoginFailure.__table__
login_addresses = LoginAddress.__table__
INSERT_UPLOAD = insert(uploads)
# INSERT … ON CONFLICT, which both supported dialects spell alike
ON_CONFLICT_INSERT: dict[str, Callable[[Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


class GroupInsert:
    """Concurrent creations share one round trip: rows that arrive while an INSERT is on
    its way go together in the next one (an executemany in one transaction), and each
    caller returns once its row is committed. A batch that fails is retried row by row,
    so one bad row fails only its own request."""

    def __init__(self, engine: AsyncEngine, statement):
        self.engine = engine
        self.statement = statement  # prebuilt: compiled once, rows passed as parameters
        self._waiting: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def add(self, values: dict[str, Any]) -> None:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((values, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._insert([values for values, _ in batch])
                except Exception:
                    for values, future in batch:
                        await self._settle_alone(values, future)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flusher = None

    async def _settle_alone(self, values: dict[str, Any], future: asyncio.Future) -> None:
        try:
            await self._insert([values])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.statement, rows)


class Repo:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        # Single statements need no BEGIN/COMMIT (or BEGIN/ROLLBACK around a read): one round
        # trip each. Multi-statement work keeps explicit transactions on self.engine.
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._upload_inserts = GroupInsert(engine, INSERT_UPLOAD)

    # -- users --------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str, role: str) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(users)
                .values(
                    username=username,
                    password_hash=password_hash,
                    role=role,
                    token_version=0,
                    created_at=utcnow(),
                )
                .returning(users.c.id)
            )
            return result.scalar_one()

    async def user_by_name(self, username: str) -> Row | None:
        return await self._one(select(users).where(users.c.username == username))

    async def user_by_id(self, user_id: int) -> Row | None:
        return await self._one(select(users).where(users.c.id == user_id))

    async def count_users(self) -> int:
        return await self._scalar(select(func.count()).select_from(users))

    async def set_password(self, user_id: int, password_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=password_hash, token_version=users.c.token_version + 1)
            )

    async def rehash_password(self, user_id: int, old_hash: str, password_hash: str) -> None:
        """The same password hashed again with stronger parameters: tokens stay valid. Only
        while the hash is still `old_hash`: a password changed meanwhile stays changed."""
        await self._execute(
            update(users)
            .where(users.c.id == user_id, users.c.password_hash == old_hash)
            .values(password_hash=password_hash)
        )

    # -- uploads ------------------------------------------------------------
    async def insert_upload(self, **values: Any) -> None:
        await self._upload_inserts.add(values)

    async def upload(self, upload_id: str) -> Row | None:
        return await self._one(select(uploads).where(uploads.c.id == upload_id))

    async def update_upload(self, upload_id: str, **values: Any) -> None:
        await self._execute(
            update(uploads).where(uploads.c.id == upload_id).values(updated_at=utcnow(), **values)
        )

    @contextlib.asynccontextmanager
    async def completing(
        self, upload_id: str, offset: int, sha256: str | None = None
    ) -> AsyncIterator[CompletionRecord]:
        """Marks the upload complete in a transaction that stays open for the block: what the
        block records through the yielded handle (a batch) commits with the completion, or
        neither does. With `sha256`, the file is already in durable storage."""
        now = utcnow()
        durable = dict(location="durable", sha256=sha256) if sha256 else {}
        async with self.engine.begin() as conn:
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(
                    upload_offset=offset,
                    status="complete",
                    completed_at=now,
                    updated_at=now,
                    expires_at=None,
                    **durable,
                )
            )
            yield CompletionRecord(conn, now, sha256)

    async def record_durable(self, upload_id: str, sha256: str) -> None:
        """The file is in durable storage, with this sha256: one transaction, so no crash
        leaves a durable upload without its hash."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(location="durable", sha256=sha256, updated_at=utcnow())
            )
            await conn.execute(
                update(batches)
                .where(batches.c.upload_id == upload_id)
                .values(sha256=sha256, updated_at=utcnow())
            )
            await _notify_work(conn)  # the batch's file is in durable storage: its pages can be listed

    async def record_lost(self, upload_id: str, error: str) -> None:
        """A completed upload whose bytes are gone: it holds nothing, and its batch failed."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == upload_id)
                .values(location="lost", upload_offset=0, sha256=None, updated_at=now)
            )
            await conn.execute(
                update(batches)
                .where(batches.c.upload_id == upload_id)
                .values(
                    status="failed",
                    error=error,
                    size=0,
                    sha256=None,
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=now,
                    completed_at=now,
                )
            )

    async def expired_uploads(self, now: dt.datetime, limit: int = 500) -> Sequence[str]:
        result = await self._all(
            select(uploads.c.id)
            .where(
                uploads.c.expires_at <= now,
                or_(
                    uploads.c.status == "active",
                    and_(uploads.c.status == "complete", uploads.c.concat == "partial"),
                ),
            )
            .limit(limit)
        )
        return [row.id for row in result]

    async def reserved_by_owner(self, since: dt.datetime) -> dict[int, tuple[int, int]]:
        """Per owner of active uploads: (bytes still owed to those of declared length touched
        since `since`, bytes they already hold on the store); see uploads/reservations.py. A
        final upload's copy stays owed while it waits for its partials (it is not patched)."""
        # a legacy upload's length is known at completion; until then its chunks bound it
        c = uploads.c
        length = func.coalesce(c.length, c.total_chunks * c.chunk_size)
        owed = case(
            (
                and_(length.is_not(None), or_(c.updated_at >= since, c.concat == "final")),
                length - c.upload_offset,
            ),
            else_=0,
        )
        rows = await self._all(
            select(c.owner_id, func.sum(owed), func.sum(c.upload_offset))
            .where(c.status == "active")
            .group_by(c.owner_id)
        )
        return {owner: (int(owed or 0), int(held or 0)) for owner, owed, held in rows}

    async def quota_standings(self) -> dict[int, tuple[str, int, int, int]]:
        """Per user with a quota: (username, quota, bytes stored, bytes committed), as
        db/usage.py defines them; see uploads/quotas.py. Reads only those users' uploads."""
        rows = await self._all(
            select(users.c.id, users.c.username, users.c.quota_bytes, stored_bytes, committed_bytes)
            .select_from(users.outerjoin(uploads, uploads.c.owner_id == users.c.id))
            .where(users.c.quota_bytes.is_not(None))
            .group_by(users.c.id, users.c.username, users.c.quota_bytes)
        )
        return {row[0]: (row[1], int(row[2]), int(row[3]), int(row[4])) for row in rows}

    async def uploads_to_archive(self) -> Sequence[str]:
        """Completed uploads (not partial ones: they wait on the store to be concatenated) still
        on the in-progress store, or durable without their sha256 (a node stopped mid-move)."""
        rows = await self._all(
            select(uploads.c.id).where(
                uploads.c.status == "complete",
                or_(uploads.c.concat.is_(None), uploads.c.concat != "partial"),
                or_(
                    uploads.c.location == "store",
                    and_(uploads.c.location == "durable", uploads.c.sha256.is_(None)),
                ),
            )
        )
        return [row.id for row in rows]

    async def uploads_at_length(self) -> Sequence[str]:
        """Active uploads that hold all their bytes: a node stopped before it completed them."""
        rows = await self._all(
            select(uploads.c.id).where(
                uploads.c.status == "active",
                uploads.c.length.is_not(None),
                uploads.c.upload_offset == uploads.c.length,
                or_(uploads.c.concat.is_(None), uploads.c.concat != "final"),
            )
        )
        return [row.id for row in rows]

    async def legacy_uploads_with_all_chunks(self) -> Sequence[str]:
        """Active legacy uploads whose every chunk is stored: a node stopped (or its database or
        durable copy failed) before the request that stored the last one completed them."""
        stored = select(func.count()).where(chunks.c.upload_id == uploads.c.id).scalar_subquery()
        rows = await self._all(
            select(uploads.c.id).where(
                uploads.c.status == "active",
                uploads.c.protocol == "legacy",
                uploads.c.chunk_size.is_not(None),
                uploads.c.total_chunks == stored,
            )
        )
        return [row.id for row in rows]

    async def active_finals(self) -> Sequence[str]:
        """Final uploads (tus concatenation) not complete yet: a node may have stopped while
        assembling one whose partial uploads were all complete."""
        rows = await self._all(
            select(uploads.c.id).where(uploads.c.status == "active", uploads.c.concat == "final")
        )
        return [row.id for row in rows]

    async def upload_states(self, upload_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(status, location) of the uploads that exist among these ids."""
        rows = await self._all(
            select(uploads.c.id, uploads.c.status, uploads.c.location).where(
                uploads.c.id.in_(list(upload_ids))
            )
        )
        return {row.id: (row.status, row.location) for row in rows}

    async def record_chunk(
        self, upload_id: str, index: int, size: int, expires_at: dt.datetime | None = None
    ) -> tuple[int, int]:
        """Notes a chunk as stored (once, however often it is retried), and returns the number
        of distinct chunks and their total size, which becomes the upload's offset: one round
        trip for all of it."""
        values = dict(upload_id=upload_id, chunk_index=index, size=size)
        async with self.engine.begin() as conn:
            dialect_insert = ON_CONFLICT_INSERT.get(conn.dialect.name)
            if dialect_insert is not None:
                await conn.execute(dialect_insert(chunks).values(**values).on_conflict_do_nothing())
            else:
                async with conn.begin_nested():
                    with contextlib.suppress(IntegrityError):
                        await conn.execute(insert(chunks).values(**values))
            count, total = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(chunks.c.size), 0)).where(
                        chunks.c.upload_id == upload_id
                    )
                )
            ).one()
            update_values = dict(upload_offset=int(total), updated_at=utcnow())
            if expires_at is not None:
                update_values["expires_at"] = expires_at
            await conn.execute(update(uploads).where(uploads.c.id == upload_id).values(**update_values))
        return int(count), int(total)

    async def chunk_totals(self, upload_id: str) -> tuple[int, int]:
        """How many distinct chunks are stored, and their total size."""
        async with self.autocommit.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(chunks.c.size), 0)).where(
                        chunks.c.upload_id == upload_id
                    )
                )
            ).one()
        return int(row[0]), int(row[1])

    async def has_chunk(self, upload_id: str, index: int) -> bool:
        return (
            await self._one(
                select(chunks.c.size).where(chunks.c.upload_id == upload_id, chunks.c.chunk_index == index)
            )
            is not None
        )

    # -- concatenation ------------------------------------------------------
    async def insert_final(self, values: dict[str, Any], partial_ids: Sequence[str]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(uploads).values(**values))
            await conn.execute(
                insert(parts),
                [dict(final_id=values["id"], part_index=i, partial_id=p) for i, p in enumerate(partial_ids)],
            )

    async def parts_of(self, final_id: str) -> Sequence[Row]:
        """The partial uploads of a final one, in order."""
        return await self._all(
            select(uploads)
            .join(parts, parts.c.partial_id == uploads.c.id)
            .where(parts.c.final_id == final_id)
            .order_by(parts.c.part_index)
        )

    async def joined_parts_held(self) -> Sequence[Row]:
        """Partial uploads still on the store whose final is complete: their bytes were copied
        into it, and a stop came before they were freed."""
        final = uploads.alias("final")
        return await self._all(
            select(uploads.c.id)
            .join(parts, parts.c.partial_id == uploads.c.id)
            .join(final, final.c.id == parts.c.final_id)
            .where(
                uploads.c.status == "complete", uploads.c.location == "store", final.c.status == "complete"
            )
        )

    async def finals_using(self, partial_ids: Sequence[str]) -> dict[str, str]:
        """partial id -> the final upload it is already part of, whatever that final's state."""
        rows = await self._all(
            select(parts.c.partial_id, parts.c.final_id).where(parts.c.partial_id.in_(list(partial_ids)))
        )
        return {row.partial_id: row.final_id for row in rows}

    async def settle_final_lengths(self, partial_id: str) -> None:
        """Gives the finals waiting for this partial their length once every one of their
        partials has one: the final's copy is then reserved like any declared length."""
        p = uploads.alias("p")
        part_lengths = (
            select(func.sum(p.c.length))
            .select_from(parts.join(p, p.c.id == parts.c.partial_id))
            .where(parts.c.final_id == uploads.c.id)
            .scalar_subquery()
        )
        unknown = (
            select(parts.c.final_id)
            .select_from(parts.join(p, p.c.id == parts.c.partial_id))
            .where(parts.c.final_id == uploads.c.id, p.c.length.is_(None))
            .exists()
        )
        waiting = select(parts.c.final_id).where(parts.c.partial_id == partial_id)
        await self._execute(
            update(uploads)
            .where(
                uploads.c.id.in_(waiting), uploads.c.status == "active", uploads.c.length.is_(None), ~unknown
            )
            .values(length=part_lengths, updated_at=utcnow())
        )

    async def release_parts(self, final_id: str) -> None:
        """A final gone before assembly lets its partials be part of another final."""
        await self._execute(delete(parts).where(parts.c.final_id == final_id))

    async def finals_waiting_for(self, partial_id: str) -> Sequence[str]:
        rows = await self._all(
            select(parts.c.final_id)
            .join(uploads, uploads.c.id == parts.c.final_id)
            .where(parts.c.partial_id == partial_id, uploads.c.status == "active")
        )
        return [row.final_id for row in rows]

    # -- batches ------------------------------------------------------------
    async def batch(self, batch_id: str) -> Row | None:
        return await self._one(select(batches).where(batches.c.id == batch_id))

    async def batch_for_upload(self, upload_id: str) -> Row | None:
        return await self._one(select(batches).where(batches.c.upload_id == upload_id))

    async def list_batches(
        self, owner_id: int | None, filters: dict[str, str], limit: int, offset: int
    ) -> tuple[Sequence[Row], int]:
        where = [getattr(batches.c, key) == value for key, value in filters.items()]
        if owner_id is not None:
            where.append(batches.c.owner_id == owner_id)
        rows = await self._all(
            select(batches)
            .where(*where)
            .order_by(batches.c.created_at.desc(), batches.c.id)
            .limit(limit)
            .offset(offset)
        )
        total = await self._scalar(select(func.count()).select_from(batches).where(*where))
        return rows, total

    # -- tasks --------------------------------------------------------------
    async def task(self, task_id: str) -> Row | None:
        return await self._one(select(tasks).where(tasks.c.task_id == task_id))

    async def task_assets(self, task_id: str) -> dict[str, bytes]:
        rows = await self._all(
            select(task_assets.c.name, task_assets.c.content).where(task_assets.c.task_id == task_id)
        )
        return {r.name: bytes(r.content) for r in rows}

    async def asset_sizes(self, task_id: str) -> dict[str, int]:
        rows = await self._all(
            select(task_assets.c.name, func.length(task_assets.c.content).label("size"))
            .where(task_assets.c.task_id == task_id)
            .order_by(task_assets.c.name)
        )
        return {r.name: r.size for r in rows}

    async def save_task(self, values: dict[str, Any], assets: dict[str, bytes], replace: bool) -> bool:
        """Inserts the task (False if it exists), or with replace=True replaces it (False if
        absent); `assets` are added, replacing stored files of the same name."""
        now = utcnow()
        async with self.engine.begin() as conn:
            if replace:
                seen = (
                    await conn.execute(
                        select(
                            tasks.c.template, tasks.c.answer_key, tasks.c.config, tasks.c.key_version
                        ).where(tasks.c.task_id == values["task_id"])
                    )
                ).first()
                if seen is None:
                    return False
                changed = bool(assets) or any(
                    key in values and values[key] != getattr(seen, key)
                    for key in ("template", "answer_key", "config")
                )
                # a new key version rescores the task's sheets; also if another replacement
                # landed since `seen` was read, whatever it changed
                bump = case((tasks.c.key_version == seen.key_version, int(changed)), else_=1)
                result = await conn.execute(
                    update(tasks)
                    .where(tasks.c.task_id == values["task_id"])
                    .values(
                        updated_at=now,
                        key_version=tasks.c.key_version + bump,
                        **{k: v for k, v in values.items() if k != "created_by"},
                    )
                )
                if result.rowcount != 1:
                    return False
                if changed:
                    await _notify_work(conn)
                if assets:
                    await conn.execute(
                        delete(task_assets).where(
                            task_assets.c.task_id == values["task_id"], task_assets.c.name.in_(list(assets))
                        )
                    )
            else:
                try:
                    async with conn.begin_nested():
                        await conn.execute(insert(tasks).values(created_at=now, updated_at=now, **values))
                except IntegrityError:
                    return False
            if assets:
                await conn.execute(
                    insert(task_assets),
                    [
                        {"task_id": values["task_id"], "name": name, "content": content}
                        for name, content in assets.items()
                    ],
                )
        return True

    # -- the batch pipeline ---------------------------------------------------
    def _claimable(self, table, now: dt.datetime):
        return or_(table.c.lease_expires.is_(None), table.c.lease_expires < now)

    async def claim_batch(self, owner: str, lease: float) -> Row | None:
        """A batch whose file is in durable storage and whose pages are not listed yet: of the
        owner served longest ago (as `in_turn`), then the oldest, so that another user's batch
        is not listed after a hundred small ones uploaded before it. The conditional UPDATE
        makes the claim atomic on SQLite; on PostgreSQL SKIP LOCKED also keeps competing
        workers from queueing behind each other."""
        now = utcnow()
        query = (
            select(batches.c.id)
            .join(uploads, uploads.c.id == batches.c.upload_id)
            .join(users, users.c.id == batches.c.owner_id)
            .where(
                batches.c.status == "uploaded", uploads.c.location == "durable", self._claimable(batches, now)
            )
            .order_by(users.c.last_served_at.asc().nulls_first(), batches.c.created_at)
            .limit(1)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=batches, skip_locked=True)
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            claimed = await conn.execute(
                update(batches)
                .where(batches.c.id == row.id, batches.c.status == "uploaded", self._claimable(batches, now))
                .values(lease_owner=owner, lease_expires=now + dt.timedelta(seconds=lease))
            )
            if claimed.rowcount != 1:
                return None
            return (await conn.execute(select(batches).where(batches.c.id == row.id))).first()

    async def renew_batch_lease(self, batch_id: str, owner: str, lease: float) -> bool:
        """Keeps a batch being listed from being claimed by another worker; False if it was."""
        async with self.engine.begin() as conn:
            renewed = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id, batches.c.lease_owner == owner, batches.c.status == "uploaded"
                )
                .values(lease_expires=utcnow() + dt.timedelta(seconds=lease))
            )
        return renewed.rowcount == 1

    async def add_sheets(self, batch_id: str, owner: str, listing: Listing) -> bool:
        """The batch's pages become pending sheets (or the batch fails with the listing's error),
        if this worker still holds the batch: False (and nothing stored) if another took it over."""
        now = utcnow()
        pages, error = listing.pages, listing.error
        status = "failed" if error else ("processing" if pages else "completed")
        async with self.engine.begin() as conn:
            held = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id, batches.c.lease_owner == owner, batches.c.status == "uploaded"
                )
                .values(
                    status=status,
                    total_sheets=len(pages),
                    skipped=listing.skipped,
                    skipped_count=listing.skipped_count,
                    error=error[:1024] if error else None,
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=now,
                    completed_at=None if pages and not error else now,
                )
            )
            if held.rowcount != 1:
                return False
            if pages:
                await conn.execute(
                    insert(sheets),
                    [
                        dict(batch_id=batch_id, source=source, page=page, status="pending", attempts=0)
                        for source, page in pages
                    ],
                )
                await _notify_work(conn)
        return True

    async def claim_sheets(
        self, owner: str, count: int, lease: float, prefer: str | None = None
    ) -> Sequence[Row]:
        """Up to `count` pending sheets of one batch, in order, batches taking turns (see
        `in_turn`): a 10-sheet batch never waits behind another's 50,000. Batch `prefer` (the
        one whose turn this worker is in) goes first while it has sheets waiting. Competing workers
        take different sheets (SKIP LOCKED on PostgreSQL, the conditional UPDATE on SQLite)."""
        now = utcnow()
        pending = and_(sheets.c.status == "pending", self._claimable(sheets, now))
        async with self.engine.begin() as conn:
            waiting = (
                await conn.execute(
                    select(
                        batches.c.id,
                        batches.c.owner_id,
                        batches.c.claimed_at,
                        batches.c.created_at,
                        users.c.last_served_at,
                    )
                    .join(users, users.c.id == batches.c.owner_id)
                    .where(
                        batches.c.status == "processing",
                        select(sheets.c.id).where(sheets.c.batch_id == batches.c.id, pending).exists(),
                    )
                )
            ).all()
            order = in_turn(waiting)
            owners = {b.id: b.owner_id for b in waiting}
            for batch_id in ([prefer] if prefer in order else []) + order:
                query = (
                    select(sheets.c.id)
                    .where(sheets.c.batch_id == batch_id, pending)
                    .order_by(sheets.c.id)
                    .limit(count)
                )
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                ids = [row.id for row in (await conn.execute(query)).all()]
                if not ids:
                    continue  # taken by another worker meanwhile
                await conn.execute(
                    update(sheets)
                    .where(sheets.c.id.in_(ids), pending)
                    .values(
                        lease_owner=owner,
                        lease_expires=now + dt.timedelta(seconds=lease),
                        attempts=sheets.c.attempts + 1,
                    )
                )
                await conn.execute(update(batches).where(batches.c.id == batch_id).values(claimed_at=now))
                await conn.execute(
                    update(users).where(users.c.id == owners[batch_id]).values(last_served_at=now)
                )
                return (
                    await conn.execute(
                        select(sheets).where(
                            sheets.c.id.in_(ids), sheets.c.lease_owner == owner, sheets.c.status == "pending"
                        )
                    )
                ).all()
        return []

    async def save_sheet(
        self, sheet_id: int, owner: str, values: dict[str, Any], rows: list[dict[str, Any]]
    ) -> bool:
        """Stores a sheet's result and answers if this worker still holds its lease; the
        answers replace any earlier ones, so a sheet read twice never has duplicates."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(sheets)
                .where(sheets.c.id == sheet_id, sheets.c.lease_owner == owner, sheets.c.status == "pending")
                .values(lease_owner=None, lease_expires=None, processed_at=utcnow(), **values)
            )
            if done.rowcount != 1:
                return False
            await conn.execute(answers.delete().where(answers.c.sheet_id == sheet_id))
            if rows:
                await conn.execute(insert(answers), [dict(sheet_id=sheet_id, **row) for row in rows])
        return True

    async def update_progress(self, batch_id: str) -> None:
        """Counters from the sheets themselves (never incremented, so never double-counted);
        the batch completes when no sheet is pending."""
        async with self.engine.begin() as conn:
            counts: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(sheets.c.status, func.count())
                        .where(sheets.c.batch_id == batch_id)
                        .group_by(sheets.c.status)
                    )
                ).all()
            )
            now = utcnow()
            values = dict(
                processed_sheets=counts.get("ok", 0) + counts.get("needs_review", 0),
                failed_sheets=counts.get("failed", 0),
                updated_at=now,
            )
            if not counts.get("pending"):
                values.update(status="completed", completed_at=now)
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.status == "processing")
                .values(**values)
            )

    async def sheets_of(
        self, batch_id: str, status: str | None, limit: int | None, offset: int
    ) -> Sequence[Row]:
        query = select(sheets, rescoring()).where(sheets.c.batch_id == batch_id)
        if status:
            query = query.where(sheets.c.status == status)
        query = query.order_by(sheets.c.source, sheets.c.page).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return await self._all(query)

    async def operations_figures(self) -> dict[str, dict[tuple, float]]:
        """Cluster-wide figures for /metrics: incomplete uploads, sheets and batches by status,
        and the seconds completed batches took from upload to their last sheet."""
        async with self.engine.connect() as conn:
            active = (
                await conn.execute(
                    select(func.count()).select_from(uploads).where(uploads.c.status == "active")
                )
            ).scalar_one()
            sheet_counts = (
                await conn.execute(select(sheets.c.status, func.count()).group_by(sheets.c.status))
            ).all()
            batch_counts = (
                await conn.execute(select(batches.c.status, func.count()).group_by(batches.c.status))
            ).all()
            seconds: ColumnElement[Any]
            if conn.dialect.name == "postgresql":
                seconds = func.extract("epoch", batches.c.completed_at - batches.c.created_at)
            else:
                seconds = (
                    func.julianday(batches.c.completed_at) - func.julianday(batches.c.created_at)
                ) * 86400
            total, count = (
                await conn.execute(
                    select(func.coalesce(func.sum(seconds), 0), func.count()).where(
                        batches.c.status == "completed", batches.c.completed_at.is_not(None)
                    )
                )
            ).one()
        return {
            "active_uploads": {(): float(active)},
            "sheets": {(("status", s),): float(n) for s, n in sheet_counts},
            "batches": {(("status", s),): float(n) for s, n in batch_counts},
            "batch_duration_seconds_sum": {(): float(total)},
            "batch_duration_seconds_count": {(): float(count)},
        }

    async def sheet(self, sheet_id: int) -> Row | None:
        """The sheet, with `rescoring`: whether its score is from an older key than its task's."""
        return await self._one(select(sheets, rescoring()).where(sheets.c.id == sheet_id))

    async def corrections_of(self, sheet_ids: Sequence[int]) -> Sequence[Row]:
        if not sheet_ids:
            return []
        return await self._all(
            select(corrections, users.c.username)
            .outerjoin(users, users.c.id == corrections.c.corrected_by)
            .where(corrections.c.sheet_id.in_(list(sheet_ids)))
        )

    # -- failed logins ------------------------------------------------------
    async def login_failures(self, key: str) -> Row | None:
        return await self._one(select(login_failures).where(login_failures.c.username == key))

    async def count_login_attempt(
        self, key: str, now: dt.datetime, forget_before: dt.datetime, free: int, waits: Sequence[dt.datetime]
    ) -> int | None:
        """Counts one more login attempt for `key` if its throttle lets it through, in one
        statement (so concurrent attempts cannot all pass a count read before any of them is
        recorded), and returns the new count; None when the attempt must wait. The first
        `free` attempts pass; after that attempt free + k passes once its predecessor is older
        than waits[k] (the last wait for every later one). A count whose last attempt is older
        than forget_before starts again at 1."""
        c = login_failures.c
        stale = c.last_failure < forget_before
        last = len(waits) - 1
        waited = [and_(c.failures == free + k, c.last_failure <= t) for k, t in enumerate(waits[:last])]
        waited.append(and_(c.failures >= free + last, c.last_failure <= waits[last]))
        dialect_insert = ON_CONFLICT_INSERT[self.engine.dialect.name]
        insert_one = dialect_insert(login_failures).values(username=key, failures=1, last_failure=now)
        stmt = insert_one.on_conflict_do_update(
            index_elements=[c.username],
            where=or_(stale, c.failures < free, *waited),
            set_={"failures": case((stale, 1), else_=c.failures + 1), "last_failure": now},
        ).returning(c.failures)
        async with self.engine.begin() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else int(row[0])

    async def uncount_login_attempt(self, key: str) -> None:
        """An attempt counted but proven good (or never checked) does not count."""
        await self._execute(
            update(login_failures)
            .where(login_failures.c.username == key, login_failures.c.failures > 0)
            .values(failures=login_failures.c.failures - 1)
        )

    async def clear_login_failures(self, key: str) -> None:
        await self._execute(delete(login_failures).where(login_failures.c.username == key))

    async def forget_login_failures(self, before: dt.datetime) -> None:
        await self._execute(delete(login_failures).where(login_failures.c.last_failure < before))

    async def known_login_address(self, user_key: str, address_key: str) -> bool:
        return (
            await self._one(
                select(login_addresses.c.last_login).where(
                    login_addresses.c.username == user_key, login_addresses.c.address == address_key
                )
            )
            is not None
        )

    async def remember_login_address(self, user_key: str, address_key: str, now: dt.datetime) -> None:
        dialect_insert = ON_CONFLICT_INSERT[self.engine.dialect.name]
        stmt = dialect_insert(login_addresses).values(username=user_key, address=address_key, last_login=now)
        await self._execute(
            stmt.on_conflict_do_update(
                index_elements=[login_addresses.c.username, login_addresses.c.address],
                set_={"last_login": now},
            )
        )

    async def forget_login_addresses(self, before: dt.datetime) -> None:
        await self._execute(delete(login_addresses).where(login_addresses.c.last_login < before))

    async def save_correction(
        self,
        sheet_id: int,
        column: str,
        value: str,
        user_id: int,
        score: float | None,
        key_version: int | None = None,
    ) -> None:
        """Records (or replaces) an admin's answer, and the sheet's score with it (computed under
        the task's `key_version`), at once. A finished sheet leased for rescoring loses the
        lease: the rescorer read it without this correction (see db.scores)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                corrections.delete().where(corrections.c.sheet_id == sheet_id, corrections.c.column == column)
            )
            await conn.execute(
                insert(corrections).values(
                    sheet_id=sheet_id, column=column, value=value, corrected_by=user_id, corrected_at=utcnow()
                )
            )
            finished = sheets.c.status.in_(SCORED)
            scored = dict(score=score) if key_version is None else dict(score=score, key_version=key_version)
            await conn.execute(
                update(sheets)
                .where(sheets.c.id == sheet_id)
                .values(
                    lease_owner=case((finished, None), else_=sheets.c.lease_owner),
                    lease_expires=case((finished, None), else_=sheets.c.lease_expires),
                    **scored,
                )
            )

    async def reprocess_batch(self, batch_id: str) -> bool:
        """Every sheet of the completed batch is read again by the workers; corrections stay.
        False if it is not completed or retention deleted its file (checked in the statement
        that starts it, so a retention pass cannot slip in between)."""
        async with self.engine.begin() as conn:
            started = await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status == "completed",
                    batches.c.file_deleted_at.is_(None),
                )
                .values(
                    status="processing",
                    processed_sheets=0,
                    failed_sheets=0,
                    completed_at=None,
                    updated_at=utcnow(),
                )
            )
            if started.rowcount != 1:
                return False
            await conn.execute(
                update(sheets)
                .where(sheets.c.batch_id == batch_id)
                .values(status="pending", attempts=0, lease_owner=None, lease_expires=None)
            )
            await _notify_work(conn)
        return True

    async def answer_columns(self, batch_id: str) -> list[str]:
        """Every output column of a batch's sheets, in template order (a batch may mix tasks)."""
        place = func.min(answers.c.position)
        rows = await self._all(
            select(answers.c.column, place)
            .join(sheets, sheets.c.id == answers.c.sheet_id)
            .where(sheets.c.batch_id == batch_id)
            .group_by(answers.c.column)
            .order_by(place, answers.c.column)
        )
        return [r[0] for r in rows]

    async def answers_of(self, sheet_ids: Sequence[int]) -> Sequence[Row]:
        if not sheet_ids:
            return []
        return await self._all(
            select(answers)
            .where(answers.c.sheet_id.in_(list(sheet_ids)))
            .order_by(answers.c.sheet_id, answers.c.position)
        )

    # -- helpers ------------------------------------------------------------
    async def _execute(self, stmt) -> None:
        async with self.autocommit.connect() as conn:
            await conn.execute(stmt)

    async def _one(self, stmt) -> Row | None:
        async with self.autocommit.connect() as conn:
            return (await conn.execute(stmt)).first()

    async def _all(self, stmt) -> Sequence[Row]:
        async with self.autocommit.connect() as conn:
            return (await conn.execute(stmt)).all()

    async def _scalar(self, stmt):
        async with self.autocommit.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()


WORK_CHANNEL = "omr_tus_work"
NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def in_turn(waiting: Sequence[Row]) -> list[str]:
    """Batch ids (with owner_id, last_served_at, claimed_at, created_at) in the order they are
    served: first the owner served longest ago, then that owner's batch served longest ago
    (never served: the oldest first); so users share the workers evenly however many batches
    each has, and each user's batches share that part. The owner's last service is kept on the
    user (`users.last_served_at`, set by every claim), not taken from the waiting batches: a
    small batch claimed whole leaves them at once, and its owner must not look never served."""

    def turn(b):
        return (b.last_served_at or NEVER, b.claimed_at or NEVER, b.created_at, b.id)

    order = sorted(waiting, key=turn)
    return [b.id for b in order]


class CompletionRecord:
    """Writes that belong to an upload's completion, in its transaction (Repo.completing)."""

    def __init__(self, conn: AsyncConnection, now: dt.datetime, sha256: str | None):
        self._conn, self._now, self._sha256 = conn, now, sha256

    async def add_batch(self, batch: dict[str, Any]) -> None:
        """The completed upload's batch; with the file already durable, workers may take it at once."""
        await self._conn.execute(
            insert(batches).values(
                created_at=self._now,
                updated_at=self._now,
                status="uploaded",
                total_sheets=0,
                processed_sheets=0,
                failed_sheets=0,
                sha256=self._sha256,
                **batch,
            )
        )
        if self._sha256:
            await _notify_work(self._conn)


async def _notify_work(conn) -> None:
    """Tells listening workers (PostgreSQL) that work became claimable; delivered at commit."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"NOTIFY {WORK_CHANNEL}"))
