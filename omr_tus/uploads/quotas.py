"""Per-user quotas (users.quota_bytes; NULL: no limit), admins included: what a user stores,
plus what their uploads in progress have declared they will still write, plus the new bytes,
must fit (413 QUOTA_EXCEEDED otherwise). The figures come from the database (db/usage.py, the
same expressions the users list and /api/me show); reservations.py adds this node's promises
not yet written there and calls grant() when a claim is made or grows, in the same step as its
free-space check, so two creations on one node never share the same room."""

from __future__ import annotations

import dataclasses

from .. import errors

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@dataclasses.dataclass(frozen=True)
class Standing:
    """A user with a quota, as the database saw them."""

    username: str
    quota: int
    stored: int  # bytes of their uploads, in progress or complete (db/usage.py)
    committed: int  # bytes their active uploads of known length still lack


def size(n: int) -> str:
    """1536 -> "1.50 KiB (1536 bytes)": quotas are set in powers of 1024."""
    value, unit = float(n), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{n} bytes" if unit == 0 else f"{value:.2f} {UNITS[unit]} ({n} bytes)"


def grant(standing: Standing, in_flight: int, more: int, least: int) -> int:
    """How many of `more` new bytes the quota lets in: all of them, or what is left of it if
    that is at least `least` (a body that claims ahead of its bytes); else 413. `in_flight`:
    bytes this node promised that the standing does not show yet."""
    room = standing.quota - standing.stored - standing.committed - in_flight
    if more <= room:
        return more
    if 0 < least <= room:
        return room
    pending = standing.committed + in_flight
    raise errors.QUOTA_EXCEEDED(
        f"Quota exceeded: user {standing.username} stores {size(standing.stored)}"
        + (f" and has uploads in progress that will add {size(pending)}" if pending else "")
        + f", of a quota of {size(standing.quota)}; "
        + (
            f"this upload needs {size(least)} more, which does not fit. Bytes already received are kept."
            if least
            else "the bytes this upload already sent take them over it."
        )
        + " Delete uploads you no longer need, or ask an administrator for a larger quota."
    )
