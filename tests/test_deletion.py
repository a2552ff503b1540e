"""DELETE /api/batches/{id} and DELETE /files/{id} on a completed upload: the batch, its sheets,
answers and corrections, its upload and every copy of its file go (RAM disk, durable storage,
the bucket, the worker's cache: walked byte by byte afterwards); an audit row stays; nobody
else's batch is touched; a crash between the database and the disk is finished at restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from pathlib import Path

import aiohttp
import numpy as np
from sqlalchemy import func, select

from omr_tus.crashpoints import ENV
from omr_tus.db.models import Answer, Correction, Sheet, Upload
from omr_tus.http.keys import ENGINE, SETTINGS
from omr_tus.omr.simulate import EASY, simulate_sheet
from omr_tus.omr.template import Template

from .conftest import make_settings, users_and_tokens
from .helpers import eventually
from .test_omr_pipeline import TASK, TEMPLATE, process, register_task, worker, zipped
from .test_shutdown import ServerProcess


def exam(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return zipped([simulate_sheet(Template.parse(TEMPLATE), rng, EASY, task_id=TASK) for _ in range(2)])


def fingerprints(data: bytes) -> list[bytes]:
    """Slices of the file found in no other file: a copy of any part of it contains one."""
    step = max(1, len(data) // 8)
    return [data[i : i + 48] for i in range(0, len(data) - 48, step)]


def holders(roots: list[Path], data: bytes) -> list[str]:
    """Every file under `roots` that holds a part of `data`."""
    marks = fingerprints(data)
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                content = (Path(folder) / name).read_bytes()
                if any(mark in content for mark in marks):
                    found.append(str(Path(folder) / name))
    return found


def local_roots(api) -> list[Path]:
    settings = api.client.app[SETTINGS]
    return [settings.store_dir, settings.data_dir]


async def uploaded(api, data: bytes, user: str = "alice") -> tuple[str, str]:
    path = await api.create(len(data), {"filename": "exam.zip"}, user=user)
    resp = await api.patch(path, 0, data, user=user)
    assert resp.status == 204, await resp.text()
    await api.batch(resp.headers["Batch-Id"], user)
    return path, resp.headers["Batch-Id"]


async def rows_of(api, upload_id: str, batch_id: str) -> dict[str, int]:
    async with api.client.app[ENGINE].connect() as conn:
        batch_sheets = select(Sheet.id).where(Sheet.batch_id == batch_id).scalar_subquery()
        counts = {}
        for name, table, where in (
            ("uploads", Upload, Upload.id == upload_id),
            ("sheets", Sheet, Sheet.batch_id == batch_id),
            ("answers", Answer, Answer.sheet_id.in_(batch_sheets)),
            ("corrections", Correction, Correction.sheet_id.in_(batch_sheets)),
        ):
            counts[name] = await conn.scalar(select(func.count()).select_from(table).where(where))
        return counts


async def processed_and_corrected(api, data: bytes) -> tuple[str, str]:
    path, batch_id = await uploaded(api, data)
    assert (await process(api, batch_id, [worker(api)]))["status"] == "completed"
    sheet = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"][0]
    resp = await api.client.put(
        f"/api/sheets/{sheet['sheet_id']}/answers/q1", json={"value": "B"}, headers=api.auth("root")
    )
    assert resp.status == 200
    return path, batch_id


async def test_deleting_a_batch_removes_everything_and_leaves_an_audit_row(api):
    await register_task(api)
    data, others = exam(1), exam(2)
    path, batch_id = await processed_and_corrected(api, data)
    bobs_path, bobs_batch = await uploaded(api, others, user="bob")
    upload_id = path.rsplit("/", 1)[1]
    assert await rows_of(api, upload_id, batch_id) == dict(uploads=1, sheets=2, answers=2 * 61, corrections=1)
    assert holders(local_roots(api), data)  # the walk finds the file while it is there

    resp = await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth("bob"))
    assert resp.status == 404  # not bob's
    resp = await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())
    assert resp.status == 204

    await api.get_json(f"/api/batches/{batch_id}", status=404)
    await api.get_json(f"/api/batches/{batch_id}/results", status=404)
    assert (await api.head(path)).status == 404
    assert (await api.client.get(path, headers=api.auth())).status == 404
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 404
    assert await rows_of(api, upload_id, batch_id) == dict(uploads=0, sheets=0, answers=0, corrections=0)
    assert holders(local_roots(api), data) == []
    assert holders(local_roots(api), others)  # bob's batch is untouched
    assert (await api.get_json(f"/api/batches/{bobs_batch}", user="bob"))["sha256"]

    await api.get_json("/api/deletions", status=403)
    audit = (await api.get_json("/api/deletions", user="root"))["deletions"]
    assert [(a["what"], a["batch_id"], a["upload_id"], a["size"]) for a in audit] == [
        ("batch", batch_id, upload_id, len(data))
    ]
    assert audit[0]["owner"] == audit[0]["deleted_by"] == "alice" and audit[0]["reason"] == "request"
    assert audit[0]["filename"] == "exam.zip" and audit[0]["deleted_at"]
    assert (await api.get_json("/api/me"))["usage_bytes"] == 0


async def test_delete_on_a_completed_upload_deletes_its_batch(api):
    data = os.urandom(200_000)
    path, batch_id = await uploaded(api, data)
    assert (await api.client.delete(path, headers=api.tus("bob"))).status == 404
    resp = await api.client.delete(path, headers=api.tus("root"))  # an admin may delete anyone's
    assert resp.status == 204 and resp.headers["Tus-Resumable"] == "1.0.0"
    assert (await api.head(path)).status == 404
    await api.get_json(f"/api/batches/{batch_id}", status=404)
    assert holders(local_roots(api), data) == []
    audit = (await api.get_json("/api/deletions", user="root"))["deletions"]
    assert audit[0]["deleted_by"] == "root" and audit[0]["owner"] == "alice"


async def test_deleting_a_concatenated_upload_removes_its_partial_uploads(api):
    data = os.urandom(300_000)
    partials = []
    for piece in (data[:100_000], data[100_000:]):
        part = await api.create(len(piece), {"upload_type": "zip_with_qr"}, **{"Upload-Concat": "partial"})
        assert (await api.patch(part, 0, piece)).status == 204
        partials.append(part)
    resp = await api.client.post(
        "/files/", headers={**api.tus(), "Upload-Concat": "final;" + " ".join(partials)}
    )
    assert resp.status == 201, await resp.text()
    batch_id = resp.headers["Batch-Id"]
    await api.batch(batch_id)
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    for part in partials:
        assert await rows_of(api, part.rsplit("/", 1)[1], batch_id) == dict(
            uploads=0, sheets=0, answers=0, corrections=0
        )
    assert holders(local_roots(api), data) == []


def open_files_named(upload_id: str) -> list[str]:
    """This process's open files whose path names the upload (deleted or not)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if upload_id in os.readlink(f"/proc/self/fd/{fd}"):
                found.append(os.readlink(f"/proc/self/fd/{fd}"))
    return found


async def test_a_worker_reading_a_deleted_batch_carries_on_and_lets_its_file_go(api):
    await register_task(api)
    rng = np.random.default_rng(3)
    data = zipped([simulate_sheet(Template.parse(TEMPLATE), rng, EASY, task_id=TASK) for _ in range(6)])
    path, batch_id = await uploaded(api, data)
    reader = worker(api)
    await reader.run_once()  # the pages listed, 4 of the 6 sheets read: the file is open
    upload_id = path.rsplit("/", 1)[1]
    assert open_files_named(upload_id)
    _, other = await uploaded(api, exam(4))
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    assert await reader.run_once() > 0  # busy with another batch (never idle), and no error
    assert open_files_named(upload_id) == []  # the deleted file's space is freed anyway
    assert (await process(api, other, [reader]))["status"] == "completed"
    assert await reader.run_once() == 0


async def test_deleting_on_s3_empties_the_bucket_and_the_cache(
    aiohttp_client, tmp_path, database_url, seaweedfs
):
    from omr_tus.app import create_app

    overrides = seaweedfs.settings(prefix=f"del{os.getpid()}/")
    settings = make_settings(tmp_path, database_url, **overrides)
    api = await users_and_tokens(await aiohttp_client(create_app(settings)))
    await register_task(api)
    data = exam(5)
    path, batch_id = await uploaded(api, data)
    assert (await process(api, batch_id, [worker(api)]))["status"] == "completed"
    in_bucket = await asyncio.to_thread(seaweedfs.objects, overrides["s3_prefix"])
    assert any(data == content for content in in_bucket.values())
    assert holders([settings.data_dir / "cache"], data)  # the worker's copy

    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    assert await asyncio.to_thread(seaweedfs.objects, overrides["s3_prefix"]) == {}
    assert holders(local_roots(api), data) == []
    assert (await api.head(path)).status == 404


async def test_a_crash_between_the_database_and_the_disk_is_finished_at_restart(tmp_path):
    server = ServerProcess(tmp_path)
    server.env.update({ENV: "marked", "OMR_TUS_DURABLE_BEFORE_ACK": "true"})
    await server.start()
    data = os.urandom(150_000)
    url = await server.create(len(data))
    batch_id = await server.resume(url, 0, data)
    roots = [tmp_path / "store", tmp_path / "data"]
    assert holders(roots, data)
    async with aiohttp.ClientSession() as s:
        try:
            async with s.delete(f"{server.base}/api/batches/{batch_id}", headers=server.headers) as r:
                raise AssertionError(f"the server answered {r.status} instead of dying at 'marked'")
        except aiohttp.ClientConnectionError:
            pass
    assert await asyncio.to_thread(server.proc.wait, 20) == -signal.SIGKILL
    assert holders(roots, data)  # died after the commit, before the bytes went

    del server.env[ENV]
    restarted = await server.restarted()
    try:
        assert holders(roots, data) == []  # finished at start, before the server answers
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "omr-tus.db")) as db:
            upload_id = url.rsplit("/", 1)[1]
            assert db.execute("SELECT count(*) FROM uploads WHERE id = ?", (upload_id,)).fetchone() == (0,)
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{restarted.base}/api/batches/{batch_id}", headers=restarted.headers) as r:
                assert r.status == 404
            async with s.head(url, headers=restarted.headers) as r:
                assert r.status == 404
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.proc.wait, 20)


async def test_a_removed_uploads_leftovers_on_another_node_are_swept(api):
    """A node's cache and the durable directory keep nothing of an upload that is gone."""
    from omr_tus.http.keys import SWEEPER

    data = os.urandom(50_000)
    path, batch_id = await uploaded(api, data)
    settings = api.client.app[SETTINGS]
    cache = settings.data_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    upload_id = path.rsplit("/", 1)[1]
    (cache / upload_id).write_bytes(data)  # another node's worker copied it there
    kept = await api.client.app[SWEEPER].sweep()
    assert kept == 0 and (cache / upload_id).exists()  # still needed
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    (cache / upload_id).write_bytes(data)  # a copy another node made meanwhile
    (settings.durable_dir / upload_id).write_bytes(data)
    await eventually(api.client.app[SWEEPER].sweep, what="the sweep")
    assert holders(local_roots(api), data) == []


async def test_a_final_whose_partials_a_crash_left_holding_bytes_takes_them_along(api):
    """A crash between a final's completion and its partials' release leaves them complete, on
    the store, with their bytes (the state is made by hand here): deleting the final removes
    them too, and they cannot be joined into another final."""
    from omr_tus.http.keys import REPO, STORE

    from .test_tus_concat import create_final, partial

    data = os.urandom(120_000)
    parts = [await partial(api, data[:60_000], 60_000), await partial(api, data[60_000:], 60_000)]
    batch_id = (await create_final(api, " ".join(parts), meta={"filename": "x.zip"})).headers["Batch-Id"]
    await api.batch(batch_id)
    for part, piece in zip(parts, (data[:60_000], data[60_000:])):
        await api.client.app[REPO].update_upload(part.rsplit("/", 1)[1], location="store")
        api.client.app[STORE].path(part.rsplit("/", 1)[1]).write_bytes(piece)
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    assert holders(local_roots(api), data) == []
    for part in parts:
        assert (await api.head(part)).status == 404
    await create_final(api, " ".join(parts), status=400)  # "Upload ... not found"
