"""Space promised to incomplete uploads of declared length, counted from the database so
that it survives restarts and every node of a cluster sees the same figure.

An upload reserves what it still lacks (length - offset) while it is active: from its
creation (or the moment its length is declared) until it completes, is terminated, or sits
idle (no byte, no length declared) for `reservation_idle_timeout`. An idle upload keeps its
bytes but not its reservation; the PATCH that resumes it reserves again, or gets 507. One
user's reservations may take at most `reservation_user_share` of the store's free space, so
nobody can promise the whole store to themselves with body-less creations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import AsyncIterator

from .. import errors
from ..db.models import utcnow
from ..db.repo import Repo
from ..store import Store

MB = 1024 * 1024


def mb(n: int) -> str:
    return f"{n / MB:.2f}MB"


class Reservations:
    def __init__(self, repo: Repo, store: Store, idle_timeout: float, user_share: float):
        self.repo = repo
        self.store = store
        self.idle_timeout = idle_timeout
        self.user_share = user_share
        # Reservations checked on this node and not yet committed to the database (owner, bytes),
        # so that concurrent creations here cannot both take the same free bytes.
        self._in_flight: dict[object, tuple[int, int]] = {}

    def cutoff(self) -> dt.datetime:
        """Uploads untouched since then have lost their reservation."""
        return utcnow() - dt.timedelta(seconds=self.idle_timeout)

    def lapsed(self, active_at: dt.datetime | None) -> bool:
        return active_at is None or active_at < self.cutoff()

    @contextlib.asynccontextmanager
    async def claim(self, owner_id: int, need: int, upload_id: str | None = None) -> AsyncIterator[None]:
        """Checks that `need` more bytes fit (507 if not), and counts them as taken until the
        block, which records them in the database, is done. `upload_id`: the upload asking
        again, whose own (lapsed or smaller) reservation is not counted against it."""
        if need <= 0:  # nothing to promise: no query
            yield
            return
        token = object()
        self._in_flight[token] = (owner_id, need)
        try:
            await self._check(token, owner_id, need, upload_id)
            yield
        finally:
            del self._in_flight[token]

    async def _check(self, token: object, owner_id: int, need: int, upload_id: str | None) -> None:
        total, mine = await self.repo.reserved_bytes(owner_id, self.cutoff(), exclude=upload_id)
        for key, (owner, size) in self._in_flight.items():
            if key is not token:
                total += size
                mine += size if owner == owner_id else 0
        free = self.store.free_space()
        if need > free - total:
            raise errors.INSUFFICIENT_STORAGE(
                f"Not enough free space for this upload: it needs {mb(need)}, the store has "
                f"{mb(max(free - total, 0))} free. Try again later or contact the administrator.")
        limit = int(free * self.user_share)
        if mine + need > limit:
            raise errors.INSUFFICIENT_STORAGE(
                f"Not enough free space for this upload: it needs {mb(need)}, and your uploads in progress "
                f"already reserve {mb(mine)} of the {mb(limit)} one user may reserve "
                f"({self.user_share:.0%} of the store's free space). Finish or terminate one of them, "
                f"or try again later.")
