"""Space promised to incomplete uploads of declared length (and legacy chunked uploads,
total_chunks x the size of chunk 0), counted from the database so that it survives restarts
and every node of a cluster sees the same figure.

An upload reserves what it still lacks (length - offset) while it is active: from its
creation (or the moment its length is declared) until it completes, is terminated, or sits
idle (no byte, no length declared) for `reservation_idle_timeout`. An idle upload keeps its
bytes but not its reservation; the PATCH that resumes it reserves again, or gets 507. A body
of unknown final length (a deferred length, a direct legacy upload) claims its
Content-Length before a byte is written, or claims STEP bytes at a time while it streams.

One user's uploads in progress may take at most `reservation_user_share` of the space they
all may use (the store's free space plus what active uploads already hold there), counting
what the user's uploads hold as well as what they are owed: writing all but one byte of
each reservation does not free the share for more.

The sums per user are read in one query at most every SNAPSHOT_TTL seconds per node, not on
every creation (which would scan the active uploads each time); what this node promised since
that query began is added on top, so its own creations never share the same free bytes.
Another node's promises are seen within SNAPSHOT_TTL, as the store's free space itself is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from .. import errors
from ..db.models import utcnow
from ..db.repo import Repo
from ..store import Store

MB = 1024 * 1024
SNAPSHOT_TTL = 0.5
STEP = 8 * MB  # claimed at a time by a body of unknown size


def mb(n: int) -> str:
    return f"{n / MB:.2f}MB"


async def _outside_claim(more: int) -> None:
    raise RuntimeError("a claim grows only inside Reservations.claim()")


@dataclasses.dataclass
class Claim:
    """Bytes promised by this node that the database may not show yet."""

    owner_id: int
    size: int
    committed: float | None = None  # when its row was written (monotonic); None while in flight
    grow: Callable[[int], Awaitable[None]] = dataclasses.field(default=_outside_claim, repr=False)

    async def metered(self, blocks: AsyncIterable[bytes], step: int = STEP) -> AsyncIterator[bytes]:
        """The body, claiming `step` more bytes (507 if they do not fit) whenever what has
        passed would outgrow the claim."""
        passed = 0
        async for block in blocks:
            passed += len(block)
            if passed > self.size:
                await self.grow(max(step, passed - self.size))
            yield block


@dataclasses.dataclass
class _Snapshot:
    started: float  # monotonic time the query began: rows committed before it are in it
    by_owner: dict[int, tuple[int, int]]  # owner -> (bytes owed, bytes held)


class Reservations:
    def __init__(self, repo: Repo, store: Store, idle_timeout: float, user_share: float):
        self.repo = repo
        self.store = store
        self.idle_timeout = idle_timeout
        self.user_share = user_share
        self._claims: dict[object, Claim] = {}  # this node's promises the snapshot may not hold
        self._snapshot: _Snapshot | None = None
        self._refreshing: asyncio.Task | None = None

    def lapsed(self, active_at: dt.datetime | None) -> bool:
        """Whether an upload last active then has lost its reservation."""
        return active_at is None or active_at < self._cutoff()

    def forget(self) -> None:
        """Space came back (an upload was terminated or expired): the next check asks again."""
        self._snapshot = None

    @contextlib.asynccontextmanager
    async def claim(self, owner_id: int, need: int) -> AsyncIterator[Claim]:
        """Checks that `need` more bytes fit (507 if not), and counts them as taken from then
        on: the block records them in the database (a row, a length, a touch, bytes written);
        it may claim more as it goes (Claim.grow, Claim.metered)."""
        token, claim = object(), Claim(owner_id, 0)

        async def grow(more: int) -> None:
            await self._check(token, owner_id, more, claim.size)
            claim.size += more

        claim.grow = grow
        self._claims[token] = claim
        try:
            if need > 0:  # nothing to promise: no query
                await grow(need)
            yield claim
        except BaseException:
            del self._claims[token]
            raise
        claim.committed = time.monotonic()

    def _cutoff(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=self.idle_timeout)

    async def _check(self, token: object, owner_id: int, need: int, claimed: int = 0) -> None:
        """507 unless `need` more bytes fit beside everything promised, and within the owner's
        share; `claimed`: what this claim already holds."""
        snapshot = await self._current()
        owed = sum(o for o, _ in snapshot.by_owner.values())
        held = sum(h for _, h in snapshot.by_owner.values())
        mine = sum(snapshot.by_owner.get(owner_id, (0, 0))) + claimed
        for key, claim in self._claims.items():
            if key is not token and (claim.committed is None or claim.committed >= snapshot.started):
                owed += claim.size
                mine += claim.size if claim.owner_id == owner_id else 0
        free = self.store.free_space()
        if need > free - owed:
            raise errors.INSUFFICIENT_STORAGE(
                f"Not enough free space for this upload: it needs {mb(need)}, the store has "
                f"{mb(max(free - owed, 0))} free. Try again later or contact the administrator."
            )
        limit = int((free + held) * self.user_share)
        if mine + need > limit:
            raise errors.INSUFFICIENT_STORAGE(
                f"Not enough free space for this upload: it needs {mb(need)}, and your uploads in progress "
                f"already hold or reserve {mb(mine)} of the {mb(limit)} one user may take "
                f"({self.user_share:.0%} of the space for uploads in progress). Finish or terminate one of "
                f"them, or try again later."
            )

    async def _current(self) -> _Snapshot:
        """The sums per user, read again when older than SNAPSHOT_TTL (one query for every
        check that waits meanwhile)."""
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.started < SNAPSHOT_TTL:
            return snapshot
        if self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> _Snapshot:
        try:
            started = time.monotonic()
            snapshot = _Snapshot(started, await self.repo.reserved_by_owner(self._cutoff()))
            self._snapshot = snapshot
            for key, claim in list(self._claims.items()):  # the database holds them now
                if claim.committed is not None and claim.committed < started:
                    del self._claims[key]
            return snapshot
        finally:
            self._refreshing = None
