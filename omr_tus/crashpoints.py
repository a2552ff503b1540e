"""Test-only crash points. With OMR_TUS_CRASH_AT=<point> set, the process kills itself with
SIGKILL the first time it reaches that named step of completion, archiving or removal, so a test can
prove that each step is recoverable after a crash (tests/test_crash_points.py). Unset (always,
outside that test), `reach` does nothing."""

from __future__ import annotations

import os
import signal

POINTS = (
    "completed",  # the upload is marked complete (and its batch made); nothing after it has run
    "copied",  # the durable copy's bytes are written and fsynced under a temporary name
    "renamed",  # the durable copy has its final name, directory fsynced; the database not told yet
    "recorded",  # the database says durable, with the sha256; the RAM-disk copy is not deleted yet
)
REMOVAL_POINTS = ("marked",)  # a removal is committed (batch rows gone); no copy of the file removed yet
ENV = "OMR_TUS_CRASH_AT"
_AT = os.environ.get(ENV) or None
if _AT is not None and _AT not in POINTS + REMOVAL_POINTS:
    raise ValueError(f"{ENV} must be one of {', '.join(POINTS + REMOVAL_POINTS)}, not {_AT!r}")


def reach(point: str) -> None:
    assert point in POINTS + REMOVAL_POINTS, point
    if point == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
