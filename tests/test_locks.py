"""The upload lock's holder: when a waiter may stop it (its client silent for stall_timeout)."""

from __future__ import annotations

import time

import pytest

from omr_tus.uploads.locks import Holder


@pytest.mark.parametrize("silent_since_armed, stopped", [(0.0, False), (0.6, True)])
def test_silence_counts_from_when_the_writer_starts_reading(monkeypatch, silent_since_armed, stopped):
    """A PATCH may wait long for its lock or the database while its client's bytes sit unread:
    that time is not the client's silence, so a waiter must not stop it for that."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    holder = Holder()
    calls = []
    now[0] += 5.0  # the lock and the database took 5 s
    holder.arm(lambda: calls.append("stopped"))
    now[0] += silent_since_armed
    holder.interrupt_if_stalled(0.5)
    assert calls == (["stopped"] if stopped else [])


def test_bytes_arriving_unread_are_not_silence(monkeypatch):
    """The store is slow (the writer reads nothing for a while) but the client keeps sending:
    the bytes reaching the request keep the writer alive."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    arrived = [0]
    holder = Holder()
    calls = []
    holder.arm(lambda: calls.append("stopped"), received=lambda: arrived[0])
    for _ in range(10):  # 10 s of a stuck store write, 64 KiB arriving every second
        now[0] += 1.0
        arrived[0] += 65536
        holder.interrupt_if_stalled(0.5)
    assert calls == []
    now[0] += 0.6  # now the client is silent
    holder.interrupt_if_stalled(0.5)
    assert calls == ["stopped"]
