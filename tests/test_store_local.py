"""The local store keeps every byte that arrived, even when the body breaks mid-way."""

from __future__ import annotations

import os
import time

import pytest

from omr_tus.store import LocalStore, WriteProgress
from omr_tus.store import local


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
