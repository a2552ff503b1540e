"""Wakes idle workers as soon as there is work: on PostgreSQL they LISTEN on the channel the
repo NOTIFYs in the transactions that make work claimable, so they can poll rarely. On SQLite,
or if the listening connection is lost, they simply poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..db.repo import WORK_CHANNEL

log = logging.getLogger("omr_tus.worker")


class Wakeup:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.listening = False
        self._event = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._driver = None

    async def __aenter__(self) -> Wakeup:
        if self.engine.dialect.name != "postgresql":
            return self
        try:
            self._conn = await self.engine.connect()
            driver = (await self._conn.get_raw_connection()).driver_connection
            assert driver is not None, "an open connection has its driver's connection"
            self._driver = driver
            await driver.add_listener(WORK_CHANNEL, self._notified)
            driver.add_termination_listener(self._lost)
            self.listening = True
        except Exception:  # no listener: the worker polls as on SQLite
            log.exception("cannot LISTEN for work; polling instead")
            await self._close()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._close()

    def _notified(self, *_args) -> None:
        self._event.set()

    def _lost(self, *_args) -> None:
        log.warning("the LISTEN connection closed; polling instead")
        self.listening = False
        self._event.set()

    async def wait(self, stop: asyncio.Event, timeout: float) -> None:
        """Until a notification, `stop`, or `timeout` seconds."""
        waiters = [asyncio.ensure_future(self._event.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._event.clear()

    async def _close(self) -> None:
        if self._driver is not None and self.listening:
            with contextlib.suppress(Exception):
                await self._driver.remove_listener(WORK_CHANNEL, self._notified)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = self._driver = None
        self.listening = False
