"""One writer per upload across every node on one PostgreSQL database.

A request first takes the upload's in-process lock (so requests on one node queue without a
database round trip), then a PostgreSQL advisory lock on the node's one lock connection. Session
locks rather than transaction locks: a transaction lock would pin a pooled connection for the
whole body of every PATCH (minutes for a slow client), so connections, not bandwidth, would cap
the number of uploads; here a node needs one connection whatever its load, and PostgreSQL drops
a node's locks by itself when that node dies. A request that finds the lock taken by another
node asks the holder to let go (NOTIFY on RELEASE_CHANNEL; a holder whose client went silent
stops and keeps its bytes), and gets 423 if the lock is not free within lock_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import errors
from ..config import Settings
from .locks import Holder, UploadLocks

log = logging.getLogger("omr_tus.locks")
RELEASE_CHANNEL = "omr_tus_release"
# The connection is gone (not a query that failed on a working one).
CONNECTION_LOST = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)


def lock_key(upload_id: str) -> int:
    """A signed 64-bit advisory lock key for any lock name (ids, 'id/chunk')."""
    return int.from_bytes(hashlib.blake2b(upload_id.encode(), digest_size=8).digest(), "big", signed=True)


class SharedUploadLocks:
    local_only = False  # another node may write an upload between two of this node's requests
    POLL = 0.05

    def __init__(self, dsn: str, local: UploadLocks, connect_timeout: float = 5.0):
        self.dsn = dsn
        self.local = local
        self.timeout = local.timeout
        self.connect_timeout = connect_timeout
        self.queries = 0  # round trips on the lock connection (a metric)
        self._remote_waits = 0
        self._conn = None
        self._io = asyncio.Lock()  # one query at a time on the one connection

    @property
    def waits(self) -> int:
        return self.local.waits + self._remote_waits

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str, timeout: float | None = None) -> AsyncIterator[Holder]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout if timeout is None else timeout)
        async with self.local.hold(upload_id, timeout) as holder:
            key = lock_key(upload_id)
            await self._acquire(upload_id, key, deadline)
            try:
                yield holder
            finally:
                await asyncio.shield(self._release(key))

    async def _acquire(self, upload_id: str, key: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if await self._query("SELECT pg_try_advisory_lock($1)", key):
            return
        self._remote_waits += 1
        ask_every = max(self.local.stall_timeout / 2, self.POLL)
        next_ask = loop.time()
        while True:
            if loop.time() >= next_ask:  # again now and then: a live holder may go silent later
                await self._query("SELECT pg_notify($1, $2)", RELEASE_CHANNEL, upload_id)
                next_ask = loop.time() + ask_every
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.LOCKED()
            await asyncio.sleep(min(self.POLL, remaining))
            if await self._query("SELECT pg_try_advisory_lock($1)", key):
                return

    async def _release(self, key: int) -> None:
        with contextlib.suppress(errors.ServiceError):  # no connection: the lock went with it
            await self._query("SELECT pg_advisory_unlock($1)", key)

    async def _query(self, sql: str, *args):
        async with self._io:
            try:
                conn = self._conn or await self._connect()
                self.queries += 1
                return await conn.fetchval(sql, *args)
            except CONNECTION_LOST as exc:
                self._lost(exc)
                raise errors.UNAVAILABLE(headers={"Retry-After": "2"}) from None

    async def _connect(self):
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        await conn.add_listener(RELEASE_CHANNEL, self._release_asked)
        conn.add_termination_listener(lambda _conn: self._lost(None))
        self._conn = conn
        return conn

    def _release_asked(self, _conn, _pid, _channel, upload_id: str) -> None:
        self.local.interrupt_stalled(upload_id)

    def _lost(self, exc: BaseException | None) -> None:
        """The connection, and with it every lock of this node, is gone: stop the writers,
        which no longer have their upload to themselves (their bytes are kept)."""
        if self._conn is None and exc is None:
            return
        log.warning(
            "lost the PostgreSQL lock connection (%s); stopping this node's writers",
            type(exc).__name__ if exc else "closed",
        )
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
        self.local.interrupt_all()

    def interrupt_idle(self, idle_timeout: float) -> None:
        self.local.interrupt_idle(idle_timeout)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)


@contextlib.asynccontextmanager
async def open_locks(
    settings: Settings, engine: AsyncEngine
) -> AsyncIterator[UploadLocks | SharedUploadLocks]:
    """In-process locks for one node (or SQLite); PostgreSQL locks when several nodes share the
    database (settings.locks: auto = PostgreSQL whenever the database is)."""
    local = UploadLocks(settings.lock_timeout, settings.stall_timeout)
    postgres = engine.dialect.name == "postgresql"
    if settings.locks == "process" or (settings.locks == "auto" and not postgres):
        yield local
        return
    if not postgres:
        raise ValueError("OMR_TUS_LOCKS=postgresql needs a PostgreSQL database")
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    shared = SharedUploadLocks(dsn, local)
    try:
        yield shared
    finally:
        await shared.close()
