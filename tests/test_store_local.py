"""The local store keeps every byte that arrived, even when the body breaks mid-way."""

from __future__ import annotations

import os
import time

import pytest

from omr_tus.store import LocalStore, WriteProgress, local


async def test_a_broken_body_keeps_the_blocks_gathered_behind_a_slow_write(tmp_path, monkeypatch):
    real = local.write_all

    def slow(fd, blocks, position):  # a slow disk: later blocks gather behind this write
        time.sleep(0.05)
        return real(fd, blocks, position)

    monkeypatch.setattr(local, "write_all", slow)
    store = LocalStore(tmp_path)
    blocks = [os.urandom(64 * 1024) for _ in range(12)]

    async def body():
        for block in blocks:
            yield block
        raise ConnectionResetError("client went away")

    progress = WriteProgress()
    with pytest.raises(ConnectionResetError):
        await store.write("u", 0, body(), progress)
    assert progress.written == 12 * 64 * 1024
    assert (tmp_path / "u").read_bytes() == b"".join(blocks)
    await store.close()


async def test_many_small_blocks_are_written_in_order(tmp_path):
    """More blocks than one pwritev takes (IOV_MAX): a slow client's body."""
    from omr_tus.store.fileio import IOV_MAX, write_all

    blocks = [bytes([i % 251]) * 7 for i in range(3 * IOV_MAX + 5)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert write_all(fd, blocks, 3) == 7 * len(blocks)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes()[3:] == b"".join(blocks)
