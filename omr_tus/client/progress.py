"""Progress bars on stderr, so stdout stays clean for what a script reads (a batch id, a CSV).

On a terminal the line is redrawn in place at most 10 times a second; in a log (stderr not a
TTY) a plain line is written every few seconds instead of a stream of carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24
TTY_INTERVAL = 0.1
LOG_INTERVAL = 5.0
MB = 1000 * 1000


class Bar:
    """Draws `line()` as the value moves; subclasses say what the line reads."""

    def __init__(self, total: int, stream: TextIO | None = None):
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._drawn_at = float("-inf")
        self._width = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._drawn_at >= (TTY_INTERVAL if self.tty else LOG_INTERVAL):
            self._draw(now)

    def advance(self, amount: int) -> None:
        self.update(self.done + amount)

    def close(self) -> None:
        """The final state, always drawn, and the end of the line."""
        self._draw(time.monotonic())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = round(WIDTH * fraction)
        return f"[{'#' * filled}{'.' * (WIDTH - filled)}] {100 * fraction:5.1f}%"

    def line(self) -> str:
        raise NotImplementedError


class BytesBar(Bar):
    """Bytes sent of a file: the rate counts only this run's bytes, so resuming at 90 % does
    not show an absurd speed."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None):
        super().__init__(total, stream)
        self.label = label
        self._started_at = time.monotonic()
        self._start = 0

    def resume_at(self, done: int) -> None:
        """Bytes the server already had: shown as done, not counted in the rate."""
        self._start, self._started_at = done, time.monotonic()
        self.update(done)

    def line(self) -> str:
        elapsed = time.monotonic() - self._started_at
        rate = (self.done - self._start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        return (
            f"{self.label} {self.bar()} {self.done / MB:,.1f}/{self.total / MB:,.1f} MB "
            f"{rate / MB:6.1f} MB/s ETA {clock(eta)}"
        )


class SheetsBar(Bar):
    """Sheets read of a batch, while the workers process it."""

    status = "uploaded"
    failed = 0

    def show(self, progress: dict) -> None:
        self.total = progress["total_sheets"]
        self.status = progress["status"]
        self.failed = progress["failed_sheets"]
        self.update(progress["processed_sheets"] + self.failed)

    def line(self) -> str:
        if not self.total:
            return f"sheets: {self.status}"
        return f"sheets {self.bar()} {self.done}/{self.total} ({self.failed} failed) {self.status}"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
