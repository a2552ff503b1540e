"""The SQL of user and task administration (the admin pages and `omr-tus users|tasks`): a
sibling of repo.py, so the upload core's statements and these stay apart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .models import Task, Upload, User
from .usage import stored_bytes

users = User.__table__
uploads = Upload.__table__
tasks = Task.__table__
USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.role,
    users.c.disabled_at,
    users.c.quota_bytes,
    users.c.created_at,
)


class LastAdmin(Exception):
    """The change would leave no enabled admin (nobody could administer the server)."""


class AdminRepo:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _with_usage() -> Select:
        """Users with usage_bytes: the bytes they store (usage.stored_bytes)."""
        usage = (
            select(uploads.c.owner_id, stored_bytes.label("usage_bytes"))
            .group_by(uploads.c.owner_id)
            .subquery()
        )
        return select(*USER_COLUMNS, func.coalesce(usage.c.usage_bytes, 0).label("usage_bytes")).outerjoin(
            usage, usage.c.owner_id == users.c.id
        )

    async def users(self) -> Sequence[Row]:
        """Every user with usage_bytes, by name."""
        async with self.autocommit.connect() as conn:
            return (await conn.execute(self._with_usage().order_by(users.c.username))).all()

    async def user(self, user_id: int) -> Row | None:
        async with self.autocommit.connect() as conn:
            return (await conn.execute(self._with_usage().where(users.c.id == user_id))).first()

    async def change_user(self, user_id: int, values: dict[str, Any], revoke: bool) -> bool:
        """Applies `values` to the user (False if there is none); `revoke` makes their tokens
        stop working. Raises LastAdmin, changing nothing, when no enabled admin would remain.
        On PostgreSQL the enabled admins are locked first, so two admins demoting each other
        at once cannot both succeed; SQLite has one writer at a time anyway."""
        enabled_admin = (users.c.role == "admin") & users.c.disabled_at.is_(None)
        if revoke:
            values = {**values, "token_version": users.c.token_version + 1}
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(select(users.c.id).where(enabled_admin).with_for_update())
            result = await conn.execute(update(users).where(users.c.id == user_id).values(**values))
            if result.rowcount != 1:
                return False
            if not await conn.scalar(select(func.count()).select_from(users).where(enabled_admin)):
                raise LastAdmin()  # leaving the block rolls the update back
        return True

    async def tasks(self, limit: int, offset: int) -> tuple[Sequence[Row], int]:
        """Registered tasks, newest first, without their templates, and how many there are."""
        async with self.autocommit.connect() as conn:
            rows = (
                await conn.execute(
                    select(tasks.c.task_id, tasks.c.name, tasks.c.created_at, tasks.c.updated_at)
                    .order_by(tasks.c.created_at.desc(), tasks.c.task_id)
                    .limit(limit)
                    .offset(offset)
                )
            ).all()
            total = await conn.scalar(select(func.count()).select_from(tasks))
        return rows, int(total or 0)
