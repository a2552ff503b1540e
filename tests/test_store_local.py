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


async def test_a_body_of_tiny_pieces_is_written_before_it_ends(tmp_path):
    """Writes wait for 256 KiB, or for GATHER_PIECES pieces: a body sent a byte at a time then
    left hanging holds a few pieces in memory, not 256 KiB of them (found by review)."""
    import asyncio

    from .helpers import eventually

    store = LocalStore(tmp_path)
    release = asyncio.Event()

    async def trickle():
        for _ in range(3 * local.GATHER_PIECES):
            yield b"x"
        await release.wait()

    writing = asyncio.create_task(store.write("u", 0, trickle(), WriteProgress()))
    on_disk = await eventually(
        lambda: os.path.getsize(tmp_path / "u") if (tmp_path / "u").exists() else 0,
        lambda size: size >= 2 * local.GATHER_PIECES,
        what="the pieces on disk while the body hangs",
    )
    assert on_disk <= 3 * local.GATHER_PIECES
    release.set()
    assert await writing == 3 * local.GATHER_PIECES
    await store.close()
