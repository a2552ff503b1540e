"""Space promised to incomplete uploads of declared length (and legacy chunked uploads,
total_chunks x the size of chunk 0), counted from the database so that it survives restarts
and every node of a cluster sees the same figure.

An upload reserves what it still lacks (length - offset) while it is active: from its
creation (or the moment its length is declared) until it completes, is terminated, or sits
idle (no byte, no length declared) for `reservation_idle_timeout`. An idle upload keeps its
bytes but not its reservation; the PATCH that resumes it reserves again, or gets 507. A body
of unknown final length (a deferred length, a direct legacy upload) claims its
Content-Length before a byte is written, or claims STEP bytes at a time while it streams
(fewer when the owner's quota has fewer left).

One user's uploads in progress may take at most `reservation_user_share` of the space they
all may use (the store's free space plus what active uploads already hold there), counting
what the user's uploads hold as well as what they are owed: writing all but one byte of
each reservation does not free the share for more.

The sums per user are read in one query at most every SNAPSHOT_TTL seconds per node, not on
every creation (which would scan the active uploads each time); what this node promised since
that query began is added on top, so its own creations never share the same free bytes.
Another node's promises are seen within SNAPSHOT_TTL, as the store's free space itself is.

The same step checks the owner's quota (quotas.py), from figures read with the same query
round: on one node two creations never both pass a quota only one of them fits, as they never
share free bytes. Across nodes a promise another node made less than SNAPSHOT_TTL ago (or
whose row it has not written yet) is not seen, so two nodes may each let in one upload past
the quota in that window. A body without Content-Length that streams for longer than a
checkpoint (service.COMMIT_EVERY) counts its checkpointed bytes twice until it ends, here as
for the free space: it may be refused a little early, never let past a limit.
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
from . import quotas

MB = 1024 * 1024
SNAPSHOT_TTL = 0.5
STEP = 8 * MB  # claimed at a time by a body of unknown size


def mb(n: int) -> str:
    return f"{n / MB:.2f}MB"


async def _outside_claim(more: int, least: int) -> None:
    raise RuntimeError("a claim grows only inside Reservations.claim()")


@dataclasses.dataclass
class Claim:
    """Bytes promised by this node that the database may not show yet."""

    owner_id: int
    size: int
    counted: int = 0  # the bytes of it that count against the owner's quota
    committed: float | None = None  # when its row was written (monotonic); None while in flight
    grow: Callable[[int, int], Awaitable[None]] = dataclasses.field(default=_outside_claim, repr=False)

    async def metered(self, blocks: AsyncIterable[bytes], step: int = STEP) -> AsyncIterator[bytes]:
        """The body, claiming `step` more bytes whenever what has passed would outgrow the
        claim (fewer if the owner's quota has fewer left): 507 if they do not fit the store,
        413 if the block that passed does not fit the quota. The blocks before are kept."""
        passed = 0
        async for block in blocks:
            passed += len(block)
            if passed > self.size:
                await self.grow(max(step, passed - self.size), passed - self.size)
            yield block


@dataclasses.dataclass
class _Snapshot:
    started: float  # monotonic time the query began: rows committed before it are in it
    by_owner: dict[int, tuple[int, int]]  # owner -> (bytes owed, bytes held)
    standings: dict[int, quotas.Standing]  # owner -> their quota and usage, for owners with one


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
    async def claim(
        self, owner_id: int, need: int, counted: int | None = None, verify: bool = False
    ) -> AsyncIterator[Claim]:
        """Checks that `need` more bytes fit the store (507 if not) and that `counted` of them
        (all unless said: space reserved again, or for a copy, is not new to the quota) fit the
        owner's quota (413), and counts them as taken from then on: the block records them in
        the database (a row, a length, a touch, bytes written); it may claim more as it goes
        (Claim.grow, Claim.metered). `verify`: check even when nothing new is claimed (bytes
        written before the claim, already in the sums, must fit the quota too)."""
        token, claim = object(), Claim(owner_id, 0)
        counted = need if counted is None else counted

        async def grow(more: int, least: int) -> None:
            granted = await self._check(token, claim, more, more, least)
            claim.size += granted
            claim.counted += granted

        claim.grow = grow
        self._claims[token] = claim
        try:
            if need > 0 or counted > 0 or verify:  # nothing to promise or verify: no query
                await self._check(token, claim, need, counted, counted, verify)
                claim.size, claim.counted = need, counted
            yield claim
        except BaseException:
            del self._claims[token]
            raise
        claim.committed = time.monotonic()

    def _cutoff(self) -> dt.datetime:
        return utcnow() - dt.timedelta(seconds=self.idle_timeout)

    async def _check(
        self, token: object, claim: Claim, need: int, counted: int, least: int, verify: bool = False
    ) -> int:
        """_decide() on the current sums; a quota refusal is decided again on sums read after
        the check began, so that its message states what the user stores now and bytes given
        back meanwhile (on another node too) count."""
        began = time.monotonic()
        for _ in range(3):  # a refresh already under way began before: the next one is new
            snapshot = await self._current()
            try:
                return self._decide(snapshot, token, claim, need, counted, least, verify)
            except errors.ServiceError as exc:
                if exc.spec is not errors.QUOTA_EXCEEDED or snapshot.started >= began:
                    raise
                self.forget()
        return self._decide(await self._current(), token, claim, need, counted, least, verify)

    def _decide(
        self,
        snapshot: _Snapshot,
        token: object,
        claim: Claim,
        need: int,
        counted: int,
        least: int,
        verify: bool = False,
    ) -> int:
        """How many of `counted` bytes the owner's quota lets in (at least `least`, else 413:
        quotas.grant); then 507 unless `need` (less what the quota cut) more bytes fit beside
        everything promised, and within the owner's share. Synchronous: what is counted here is
        what the claim then holds, before any other check runs."""
        owner_id = claim.owner_id
        owed = sum(o for o, _ in snapshot.by_owner.values())
        held = sum(h for _, h in snapshot.by_owner.values())
        mine = sum(snapshot.by_owner.get(owner_id, (0, 0))) + claim.size
        in_flight = claim.counted  # unseen by the quota standing, like `mine` by the snapshot
        for key, other in self._claims.items():
            if key is not token and (other.committed is None or other.committed >= snapshot.started):
                owed += other.size
                if other.owner_id == owner_id:
                    mine += other.size
                    in_flight += other.counted
        standing = snapshot.standings.get(owner_id)
        if standing is not None and (counted > 0 or verify):
            granted = quotas.grant(standing, in_flight, counted, least)
            need -= counted - granted
            counted = granted
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
        return counted

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
            by_owner = await self.repo.reserved_by_owner(self._cutoff())
            standings = {
                owner: quotas.Standing(*figures)
                for owner, figures in (await self.repo.quota_standings()).items()
            }
            snapshot = _Snapshot(started, by_owner, standings)
            self._snapshot = snapshot
            for key, claim in list(self._claims.items()):  # the database holds them now
                if claim.committed is not None and claim.committed < started:
                    del self._claims[key]
            return snapshot
        finally:
            self._refreshing = None
