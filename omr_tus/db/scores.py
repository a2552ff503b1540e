"""The SQL of scores: rescoring a task's sheets after its answer key changed, and reading the
answers of a task's sheets in bounded chunks for item analysis.

A sheet's score was computed under `sheets.key_version`; when that is lower than the task's
`tasks.key_version` the sheet is being rescored (its score is not shown). Workers claim such
sheets in chunks under the sheet lease (the columns reading uses for pending sheets; rescoring
only takes `ok` and `needs_review` ones), so any number of them share the work and a chunk of a
worker that died is claimed again when its lease runs out: nothing to resume, the versions say
what is left.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Answer, Correction, Sheet, Task, utcnow

sheets = Sheet.__table__
tasks = Task.__table__
answers = Answer.__table__
corrections = Correction.__table__
SCORED = ("ok", "needs_review")  # sheets with a result, so with a score to keep current


def _stale():
    current = select(tasks.c.key_version).where(tasks.c.task_id == sheets.c.task_id).scalar_subquery()
    return and_(sheets.c.status.in_(SCORED), sheets.c.key_version < current)


def rescoring():
    """A column of a sheet row: true while the sheet's score is from an older key than its task's."""
    return _stale().label("rescoring")


def _claimable(now: dt.datetime):
    return or_(sheets.c.lease_expires.is_(None), sheets.c.lease_expires < now)


class Scores:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def claim_rescoring(self, owner: str, count: int, lease: float) -> tuple[str, list[int]] | None:
        """Up to `count` sheets of one task scored under an older key, leased to `owner`:
        (task_id, sheet ids), or None when no sheet waits. Competing workers take different
        sheets (SKIP LOCKED on PostgreSQL, the conditional UPDATE everywhere)."""
        now = utcnow()
        stale = and_(
            sheets.c.task_id == tasks.c.task_id,
            sheets.c.status.in_(SCORED),
            sheets.c.key_version < tasks.c.key_version,
            _claimable(now),
        )
        async with self.engine.begin() as conn:
            # per task, a range scan of (task_id, key_version) below the current version
            task_id = (
                await conn.execute(
                    select(tasks.c.task_id).where(select(sheets.c.id).where(stale).exists()).limit(1)
                )
            ).scalar()
            if task_id is None:
                return None
            query = select(sheets.c.id).join(tasks, tasks.c.task_id == sheets.c.task_id)
            query = query.where(sheets.c.task_id == task_id, stale).limit(count)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=sheets, skip_locked=True)
            ids = [row.id for row in (await conn.execute(query)).all()]
            if not ids:
                return None  # taken by other workers meanwhile
            await conn.execute(
                update(sheets)
                # checked again: another worker may have rescored them since the SELECT
                .where(sheets.c.id.in_(ids), _stale(), _claimable(now))
                .values(lease_owner=owner, lease_expires=now + dt.timedelta(seconds=lease))
            )
            held = await conn.execute(
                select(sheets.c.id).where(sheets.c.id.in_(ids), sheets.c.lease_owner == owner)
            )
            return task_id, [row.id for row in held.all()]

    async def save_scores(self, owner: str, scores: Sequence[tuple[int, float | None, int]]) -> None:
        """(sheet id, score, key version it was computed under) for sheets `owner` still holds:
        a sheet read again, or corrected, meanwhile lost its lease and keeps what that wrote."""
        if not scores:
            return
        statement = (
            update(sheets)
            .where(
                sheets.c.id == bindparam("sheet"),
                sheets.c.lease_owner == owner,
                or_(*(sheets.c.status == status for status in SCORED)),  # (no IN in an executemany)
            )
            .values(
                score=bindparam("new_score"),
                key_version=bindparam("version"),
                lease_owner=None,
                lease_expires=None,
            )
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                statement,
                [dict(sheet=sheet, new_score=score, version=version) for sheet, score, version in scores],
            )

    async def progress(self, task_id: str) -> dict[str, int] | None:
        """The task's key version and how many of its scored sheets are scored under it."""
        async with self.autocommit.connect() as conn:
            version = (
                await conn.execute(select(tasks.c.key_version).where(tasks.c.task_id == task_id))
            ).scalar()
            if version is None:
                return None
            total, done = (
                await conn.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(case((sheets.c.key_version >= version, 1), else_=0)), 0),
                    ).where(sheets.c.task_id == task_id, sheets.c.status.in_(SCORED))
                )
            ).one()
        return {"key_version": int(version), "sheets_done": int(done), "sheets_total": int(total)}

    async def marked(self, sheet_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """Each sheet's answers with an admin's corrections in place of the values read."""
        values: dict[int, dict[str, str]] = defaultdict(dict)
        if not sheet_ids:
            return values
        async with self.autocommit.connect() as conn:
            for table in (answers, corrections):  # corrections second: they win
                rows = await conn.execute(
                    select(table.c.sheet_id, table.c.column, table.c.value).where(
                        table.c.sheet_id.in_(list(sheet_ids))
                    )
                )
                for sheet_id, column, value in rows:
                    values[sheet_id][column] = value
        return values

    async def scored_sheets(self, task_id: str, chunk: int) -> AsyncGenerator[list[dict[str, str]]]:
        """The marked answers of every `ok` or `needs_review` sheet of the task, `chunk` sheets
        at a time: the sheet ids come from one streamed query (one pass over the task's
        sheets), their answers by primary key per chunk."""
        async with self.engine.connect() as conn:
            result = await conn.stream(
                select(sheets.c.id).where(sheets.c.task_id == task_id, sheets.c.status.in_(SCORED))
            )
            async for part in result.partitions(chunk):
                ids = [row.id for row in part]
                marked = await self.marked(ids)
                yield [marked.get(sheet_id, {}) for sheet_id in ids]
