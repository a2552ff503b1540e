"""Apply Alembic migrations under a lock, so that several nodes (or processes) starting at
once apply each revision exactly once: a PostgreSQL advisory lock, or for a SQLite file an
flock on a file beside it.

The revisions are package data (omr_tus/migrations), so an installed wheel migrates without a
checkout; alembic.ini in the checkout points at the same folder for developers' `alembic`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import is_postgres

SCRIPT_LOCATION = "omr_tus:migrations"  # Alembic's package-resource form
MIGRATION_LOCK_KEY = 0x6F6D7274  # "omrt": any constant shared by every node
log = logging.getLogger("omr_tus.migrate")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    return cfg


def _upgrade(sync_conn) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Alembic logs every revision it applies ('Running upgrade ...'), which is the progress."""
    async with _sqlite_file_lock(engine):
        async with engine.connect() as conn:
            if is_postgres(engine):
                log.info("waiting for the migration lock")
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.commit()
            try:
                await conn.run_sync(_upgrade)
                await conn.commit()
            finally:
                if is_postgres(engine):
                    await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    await conn.commit()
    log.info("database schema is up to date")


@contextlib.asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine):
    database = make_url(str(engine.url)).database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(database + ".migrate-lock", "a") as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
