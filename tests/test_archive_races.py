"""Two copiers of one upload to durable storage (two nodes, or a restarted node's recover()
while the live node archives): neither may leave a recorded sha256 over other bytes."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from omr_tus.http.keys import SERVICE
from omr_tus.uploads import archive

DATA = os.urandom(100_000)
META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}


def test_two_concurrent_copies_never_write_into_each_other(tmp_path, monkeypatch):
    """A is about to rename its finished copy while B has just opened its own: B must not have
    truncated A's file, so what A reports is what the durable file holds."""
    src = tmp_path / "ram" / ("a" * 32)
    src.parent.mkdir()
    data = os.urandom(3 * archive.READ_BLOCK)
    src.write_bytes(data)
    dst = tmp_path / "files" / ("a" * 32)
    dst.parent.mkdir()
    a_copied, a_go, b_started, b_go = (threading.Event() for _ in range(4))
    real_update = archive._update

    def reach(point: str) -> None:
        if point == "copied" and threading.current_thread().name == "A":
            a_copied.set()
            a_go.wait(10)

    def update(hashers, block) -> None:
        if threading.current_thread().name == "B" and not b_started.is_set():
            b_started.set()
            b_go.wait(10)
        real_update(hashers, block)

    monkeypatch.setattr(archive.crashpoints, "reach", reach)
    monkeypatch.setattr(archive, "_update", update)
    results: dict[str, object] = {}

    def run(name: str) -> None:
        results[name] = archive.make_durable(src, dst, len(data), ())

    a = threading.Thread(target=run, args=("A",), name="A")
    a.start()
    assert a_copied.wait(10)
    b = threading.Thread(target=run, args=("B",), name="B")
    b.start()
    assert b_started.wait(10)  # B has created its temporary file and read its first block
    a_go.set()
    a.join(10)
    assert results["A"]["sha256"] == hashlib.sha256(dst.read_bytes()).hexdigest()
    b_go.set()
    b.join(10)
    assert results["B"]["sha256"] == hashlib.sha256(dst.read_bytes()).hexdigest()
    assert sorted(p.name for p in dst.parent.iterdir()) == [dst.name]  # no temporary file left


def test_a_missing_source_leaves_no_temporary_file_and_no_open_file(tmp_path):
    dst = tmp_path / ("a" * 32)
    open_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        archive.copy_and_hash(tmp_path / "gone", dst)
    assert list(tmp_path.iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == open_before


async def test_an_archiver_that_comes_late_does_nothing(api):
    """recover() on another node read the upload as still on the RAM disk; by the time it has the
    upload's lock the live node made it durable: it neither copies nor records again."""
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 204
    await api.batch(resp.headers["Batch-Id"])  # durable, sha256 recorded
    service = api.client.app[SERVICE]
    stale = await service.reload(path.rsplit("/", 1)[-1])
    stale.location, stale.sha256 = "store", None  # what the other node read before
    calls = []
    real = service.archiver.preserve

    async def preserve(info, algorithms=()):
        calls.append(info.id)
        return await real(info, algorithms)

    service.archiver.preserve = preserve
    await service.archiver(stale)
    assert calls == []
