"""File writes shared by the stores (call them off the event loop)."""

from __future__ import annotations

import os

try:
    IOV_MAX = os.sysconf("SC_IOV_MAX")
except (ValueError, OSError):  # pragma: no cover - every Linux has it
    IOV_MAX = 1024


def write_all(fd: int, blocks: list, position: int) -> int:
    """Writes every block, in order, at position (pwritev, no join); returns the bytes written.
    A slow client's body comes in many small blocks: they go IOV_MAX at a time."""
    total = sum(len(b) for b in blocks)
    views = [memoryview(b) for b in blocks]
    done = first = 0
    while first < len(views):
        n = os.pwritev(fd, views[first : first + IOV_MAX], position + done)
        done += n
        while first < len(views) and n >= len(views[first]):
            n -= len(views[first])
            first += 1
        if n:  # a short write ended inside this view
            views[first] = views[first][n:]
    return total
