"""The way to durable storage, in process: a durable upload without its sha256 gets it again on
recovery, a failed move is retried until it succeeds, orphaned files are swept, a lost upload
answers what it holds, and /readyz looks at durable storage too."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time

from sqlalchemy import text

from omr_tus.http.keys import ENGINE, REPO, SERVICE, SWEEPER
from omr_tus.uploads.model import LOST

from .conftest import missing_part
from .helpers import eventually

DATA = os.urandom(100_000)
SHA256 = hashlib.sha256(DATA).hexdigest()
META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}
TMP = ".0123456789abcdef.part"  # a durable copy's temporary name is <id>.<16 hex>.part


async def _upload(api) -> tuple[str, str]:
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 204, await resp.text()
    return path.rsplit("/", 1)[-1], resp.headers["Batch-Id"]


async def test_a_durable_upload_without_its_sha256_gets_it_on_recovery(api):
    upload_id, batch_id = await _upload(api)
    assert (await api.batch(batch_id))["sha256"] == SHA256
    async with api.client.app[
        ENGINE
    ].begin() as conn:  # a crash between "durable" and "sha256" (older versions)
        await conn.execute(text("UPDATE uploads SET sha256 = NULL WHERE id = :id"), {"id": upload_id})
        await conn.execute(text("UPDATE batches SET sha256 = NULL WHERE id = :id"), {"id": batch_id})
    await api.client.app[SERVICE].archiver.recover()
    assert (await api.batch(batch_id))["sha256"] == SHA256  # recomputed from the durable copy
    assert (await api.client.app[REPO].upload(upload_id)).sha256 == SHA256


async def test_a_failed_move_is_retried_until_it_succeeds(api, tmp_path, caplog):
    files = tmp_path / "data" / "files"
    shutil.move(files, tmp_path / "away")
    files.write_bytes(b"")  # durable storage unusable (as a full or missing mount would be)
    upload_id, batch_id = await _upload(api)
    await eventually(lambda: "retrying in" in caplog.text, interval=0.02, what="a retried move in the log")
    assert "move to durable storage failed" in caplog.text
    assert (await api.get_json(f"/api/batches/{batch_id}"))["sha256"] is None
    files.unlink()
    shutil.move(tmp_path / "away", files)
    assert (await api.batch(batch_id))["sha256"] == SHA256  # no restart needed
    assert (files / upload_id).read_bytes() == DATA


async def test_a_lost_upload_says_so(api):
    upload_id, batch_id = await _upload(api)
    await api.batch(batch_id)
    await api.client.app[REPO].record_lost(upload_id, LOST)  # what recovery records when the bytes are gone
    head = await api.head(f"/files/{upload_id}")
    assert head.headers["Upload-Offset"] == "0" and head.headers["Upload-Length"] == str(len(DATA))
    resp = await api.patch(f"/files/{upload_id}", 0, DATA)
    assert resp.status == 410 and LOST in await resp.text()
    batch = await api.get_json(f"/api/batches/{batch_id}")
    assert (batch["status"], batch["error"], batch["sha256"], batch["size"]) == ("failed", LOST, None, 0)


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_the_sweeper_removes_orphans_only(api, tmp_path):
    store, files, scratch = tmp_path / "store", tmp_path / "data" / "files", tmp_path / "data" / "scratch"
    done_id, batch_id = await _upload(api)
    await api.batch(batch_id)
    active = await api.create(len(DATA), meta=META)
    assert (await api.patch(active, 0, DATA[:10])).status == 204
    active_id = active.rsplit("/", 1)[-1]
    terminated = await api.create(len(DATA), meta=META)
    await api.client.delete(terminated, headers=api.tus())
    terminated_id = terminated.rsplit("/", 1)[-1]
    scratch.mkdir(exist_ok=True)
    orphans = [
        store / done_id,
        store / terminated_id,
        store / ("a" * 32),
        files / ("b" * 32 + TMP),
        files / (done_id + TMP),
        scratch / ("c" * 32),
        store / ("spool-" + "f" * 32),
    ]
    kept = [
        store / active_id,
        store / ("d" * 32),
        files / done_id,
        files / ("e" * 32 + TMP),
        store / ("spool-" + "9" * 32),
    ]  # a live request's spool
    for path in orphans + kept[1:]:
        path.write_bytes(b"x")
    for path in (
        store / ("a" * 32),
        files / ("b" * 32 + TMP),
        scratch / ("c" * 32),
        store / ("spool-" + "f" * 32),
    ):
        _age(path, 3600)  # no upload row and untouched for an hour: a dead request's
    assert await api.client.app[SWEEPER].sweep() == len(orphans)
    assert [p for p in orphans if p.exists()] == []
    assert [p for p in kept if not p.exists()] == []  # live, or too fresh to tell


async def test_readyz_checks_durable_storage(api, tmp_path):
    body = await (await api.client.get("/readyz")).json()
    assert body["checks"]["durable_store"] == "ok" and body["checks"]["durable_free_space"] == "ok"
    assert body["durable_free_bytes"] > 0
    files = tmp_path / "data" / "files"
    shutil.move(files, tmp_path / "away")
    files.write_bytes(b"")
    resp = await api.client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["durable_store"].startswith("not writable")


async def test_readyz_on_a_hung_durable_mount_answers_not_ready_and_blocks_nothing(api, monkeypatch):
    """A shared durable directory that stops answering (a hung network mount): /readyz says so
    after its probe time, and the event loop keeps serving other requests meanwhile."""
    from omr_tus.api import health

    monkeypatch.setattr(health, "PROBE_SECONDS", 0.5)
    real_free = health.LocalStore.free_space

    def hung(self):
        if self.directory.name == "files":
            time.sleep(3)  # blocks its thread like a statvfs on a dead mount
        return real_free(self)

    monkeypatch.setattr(health.LocalStore, "free_space", hung)
    ready = asyncio.ensure_future(api.client.get("/readyz"))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    assert (await api.client.get("/healthz")).status == 200
    assert time.monotonic() - started < 1  # not stuck behind the hung probe
    resp = await ready
    assert resp.status == 503
    assert (await resp.json())["checks"]["durable_free_space"] == "unknown: TimeoutError"


async def test_with_durable_before_ack_a_failed_copy_leaves_the_upload_to_complete_again(api_with, tmp_path):
    api = await api_with(durable_before_ack=True)
    files = tmp_path / "data" / "files"
    shutil.move(files, tmp_path / "away")
    files.write_bytes(b"")
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 503 and "Retry-After" in resp.headers  # not acknowledged: no batch
    assert (await api.get_json(f"/api/batches?upload_id={path.rsplit('/', 1)[-1]}"))["batches"] == []
    head = await api.head(path)
    assert head.headers["Upload-Offset"] == str(len(DATA))  # every byte is kept
    files.unlink()
    shutil.move(tmp_path / "away", files)
    resp = await api.patch(path, len(DATA), b"")  # the client's retry of the completing request
    assert resp.status == 204
    assert (await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}"))["sha256"] == SHA256


async def test_without_a_ram_disk_the_completion_only_fsyncs_and_hashes(api_with, tmp_path):
    files = tmp_path / "data" / "files"
    api = await api_with(store_dir=str(files), durable_before_ack=True)
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 204
    assert (await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}"))["sha256"] == SHA256
    assert (files / path.rsplit("/", 1)[-1]).read_bytes() == DATA
    assert sorted(p.name for p in files.iterdir()) == [path.rsplit("/", 1)[-1]]  # no copy, no .part


async def test_a_full_durable_storage_with_durable_before_ack_answers_507_and_keeps_the_bytes(
    api_with, tmp_path
):
    files = tmp_path / "data" / "files"
    files.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(files)], capture_output=True
    )
    if mounted.returncode != 0:
        missing_part(f"cannot mount a small tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        api = await api_with(durable_before_ack=True)
        big = os.urandom(2 * 1024 * 1024)
        path = await api.create(len(big), meta=META)
        resp = await api.patch(path, 0, big)
        assert resp.status == 507 and resp.headers["Retry-After"] == "60"
        assert "Durable storage is full" in await resp.text()
        assert (await api.head(path)).headers["Upload-Offset"] == str(len(big))
        assert [p.name for p in files.iterdir()] == []  # the cut-short copy was not left behind
    finally:
        subprocess.run(["umount", "-l", str(files)], check=False)
    resp = await api.patch(path, len(big), b"")  # space freed: the retried completion succeeds
    assert resp.status == 204
    assert (await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}"))["sha256"] == hashlib.sha256(
        big
    ).hexdigest()


async def test_a_bucket_error_during_a_durable_first_completion_is_a_503(api_with):
    """Any store error (here a bucket's, as the S3 store raises it) while the completion waits
    for the durable copy is a 503 with Retry-After, not a 500; the upload keeps its bytes."""
    from botocore.exceptions import EndpointConnectionError

    api = await api_with(durable_before_ack=True)
    archiver = api.client.app[SERVICE].archiver

    async def bucket_away(info, algorithms=()):
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    archiver.preserve = bucket_away
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 503 and "Retry-After" in resp.headers, (resp.status, await resp.text())
    assert (await api.head(path)).headers["Upload-Offset"] == str(len(DATA))
