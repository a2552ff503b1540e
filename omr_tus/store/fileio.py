"""File writes shared by the stores (call them off the event loop)."""

from __future__ import annotations

import os


def write_all(fd: int, blocks: list, position: int) -> int:
    """Writes every block, in order, at position (pwritev, no join); returns the bytes written."""
    total = sum(len(b) for b in blocks)
    views = [memoryview(b) for b in blocks]
    done = 0
    while views:
        n = os.pwritev(fd, views, position + done)
        done += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]
    return total
