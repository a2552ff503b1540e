"""Async engine construction for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # Enough connections for the concurrency a node sees, so none is opened per burst; a
    # broken connection is replaced when it fails (no ping round trip on every checkout).
    return create_async_engine(url, pool_size=40, max_overflow=10, pool_recycle=3600)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
    synchronous=FULL: every commit is fsynced before it returns, because responses acknowledge
    what was just committed (an offset, a completion); NORMAL would let a power cut take back
    the last commits that clients were told about."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


ROUND_TRIPS = "db_round_trips_total"


def count_round_trips(engine: AsyncEngine, counters) -> None:
    """Counts what goes to the database, by kind: each statement, and each BEGIN, COMMIT and
    ROLLBACK (one round trip each with asyncpg; none on an autocommit connection), for the
    per-request costs in BENCHMARKS.md."""
    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", lambda *_a, **_k: counters.inc(ROUND_TRIPS, kind="statement"))

    def transaction(kind: str):
        def counted(conn) -> None:
            if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
                counters.inc(ROUND_TRIPS, kind=kind)

        return counted

    for kind in ("begin", "commit", "rollback"):
        event.listen(sync, kind, transaction(kind))


def is_disk_full(exc: BaseException) -> bool:
    """The database's disk is full (SQLite's message, PostgreSQL's SQLSTATE 53100)."""
    from sqlalchemy import exc as sa

    if not isinstance(exc, sa.DBAPIError):
        return False
    return "database or disk is full" in str(exc) or getattr(exc.orig, "sqlstate", None) == "53100"


def is_outage(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, connections cut): the request may
    succeed later, so it gets 503 with Retry-After rather than 500."""
    from sqlalchemy import exc as sa

    if isinstance(exc, (ConnectionRefusedError, sa.OperationalError, sa.InterfaceError, sa.TimeoutError)):
        return True
    return isinstance(exc, sa.DBAPIError) and bool(exc.connection_invalidated)
