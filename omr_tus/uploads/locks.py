"""One writer per upload, as tusd does it: a request that finds an upload locked asks
the holder to let go. A holder whose client has gone silent (a dropped connection)
stops at once and keeps what it received; a live one finishes, and the waiter gets
423 Locked if it cannot have the lock within lock_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from .. import errors
from ..store import WriteProgress


class Holder:
    """What a lock holder exposes to waiters: its write progress (when it last saw
    data) and how to stop it."""

    def __init__(self) -> None:
        self.progress = WriteProgress()
        self.interrupt: Callable[[], None] | None = None
        self._received: Callable[[], int] | None = None
        self._seen = -1

    def arm(self, interrupt: Callable[[], None], received: Callable[[], int] | None = None) -> None:
        """From now on a waiter may stop this writer once its client is silent. The silence is
        counted from here, and `received` (the bytes that reached the request so far) tells
        the client's activity apart from the writer's: a slow store or database is not a
        silent client, whose bytes meanwhile wait unread in the request buffer."""
        self.progress.last_activity = time.monotonic()
        self.interrupt = interrupt
        self._received = received

    def _note_arrivals(self) -> None:
        if self._received is not None and (received := self._received()) != self._seen:
            self._seen = received
            self.progress.last_activity = time.monotonic()

    def interrupt_if_stalled(self, stall_timeout: float) -> None:
        self._note_arrivals()
        if self.interrupt is not None and time.monotonic() - self.progress.last_activity >= stall_timeout:
            self.interrupt()
            self.interrupt = None


class _Entry:
    __slots__ = ("lock", "holder", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.holder: Holder | None = None
        self.users = 0


class UploadLocks:
    """In-process locks; the entry for an upload exists only while someone uses it."""

    POLL = 0.05
    local_only = True  # no other process writes these uploads: what this one cached stays true

    def __init__(self, timeout: float, stall_timeout: float):
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self._entries: dict[str, _Entry] = {}
        self.waits = 0  # lock acquisitions that had to wait (a metric)

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str, timeout: float | None = None) -> AsyncIterator[Holder]:
        entry = self._entries.get(upload_id)
        if entry is None:
            entry = self._entries[upload_id] = _Entry()
        entry.users += 1
        try:
            if entry.lock.locked():
                self.waits += 1
                await self._wait(entry, self.timeout if timeout is None else timeout)
            else:
                await entry.lock.acquire()
            holder = entry.holder = Holder()
            try:
                yield holder
            finally:
                entry.holder = None
                entry.lock.release()
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[upload_id]

    async def _wait(self, entry: _Entry, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if entry.holder is not None:
                entry.holder.interrupt_if_stalled(self.stall_timeout)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.LOCKED()
            try:
                await asyncio.wait_for(entry.lock.acquire(), min(remaining, self.POLL))
                return
            except TimeoutError:
                continue

    def interrupt_stalled(self, upload_id: str) -> None:
        """Asked by a waiter elsewhere (another node): let go if the client went silent."""
        entry = self._entries.get(upload_id)
        if entry is not None and entry.holder is not None:
            entry.holder.interrupt_if_stalled(self.stall_timeout)

    def interrupt_all(self) -> None:
        """The locks no longer hold (their connection to PostgreSQL was lost): stop every writer."""
        for entry in list(self._entries.values()):
            if entry.holder is not None and entry.holder.interrupt is not None:
                entry.holder.interrupt()
                entry.holder.interrupt = None

    def interrupt_idle(self, idle_timeout: float) -> None:
        """Stops writers whose client has sent nothing for idle_timeout, even if nobody
        waits for their lock, so a silent connection cannot hold a request open forever."""
        for entry in list(self._entries.values()):
            if entry.holder is not None:
                entry.holder.interrupt_if_stalled(idle_timeout)
