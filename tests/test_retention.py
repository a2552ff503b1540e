"""Retention on a controllable clock: OMR_TUS_KEEP_FILES_DAYS removes a finished batch's file
(every copy) and keeps its results, OMR_TUS_KEEP_BATCHES_DAYS removes whole batches; nothing
before its day, nothing still being read; one node at a time; and a soak of uploads and
deletions leaves the disk as it found it."""

from __future__ import annotations

import datetime as dt
import os

from omr_tus.batches.retention import LOCK_KEY
from omr_tus.db.models import utcnow
from omr_tus.http.keys import REMOVALS, RETENTION, SERVICE

from .test_deletion import exam, holders, local_roots, processed_and_corrected, uploaded
from .test_omr_pipeline import process, register_task, worker

DAY = dt.timedelta(days=1)


async def test_files_go_after_their_days_and_results_stay(api_with):
    api = await api_with(keep_files_days=2)
    await register_task(api)
    data = exam(11)
    path, batch_id = await processed_and_corrected(api, data)
    results = await api.get_json(f"/api/batches/{batch_id}/results")
    retention = api.client.app[RETENTION]
    assert await retention.apply(utcnow() + 1.9 * DAY) == {"batches": 0, "files": 0}
    assert holders(local_roots(api), data)

    assert await retention.apply(utcnow() + 2.1 * DAY) == {"batches": 0, "files": 1}
    assert holders(local_roots(api), data) == []
    batch = await api.get_json(f"/api/batches/{batch_id}")
    assert batch["file_deleted_at"] and batch["status"] == "completed" and batch["size"] == len(data)
    assert await api.get_json(f"/api/batches/{batch_id}/results") == results  # corrections included
    resp = await api.client.get(path, headers=api.auth())
    assert resp.status == 410 and "retention" in await resp.text()
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth("root"))
    assert resp.status == 409 and "retention" in (await resp.json())["detail"]
    assert (await api.get_json("/api/me"))["usage_bytes"] == 0
    audit = (await api.get_json("/api/deletions", user="root"))["deletions"]
    assert [(a["what"], a["batch_id"], a["reason"], a["deleted_by"], a["size"]) for a in audit] == [
        ("file", batch_id, "retention", None, len(data))
    ]
    assert await retention.apply(utcnow() + 9 * DAY) == {"batches": 0, "files": 0}  # once only
    # the batch can still be deleted by its owner
    assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204


async def test_whole_batches_go_after_their_days_but_not_while_being_read(api_with):
    api = await api_with(keep_batches_days=30, keep_files_days=7)
    await register_task(api)
    finished, _ = await processed_and_corrected(api, exam(12))
    _, waiting = await uploaded(api, exam(13))  # never read: no worker ran
    retention = api.client.app[RETENTION]
    assert await retention.apply(utcnow() + 8 * DAY) == {"batches": 0, "files": 1}
    assert await retention.apply(utcnow() + 31 * DAY) == {"batches": 1, "files": 0}
    assert (await api.head(finished)).status == 404
    await api.get_json(f"/api/batches/{waiting}")  # still waiting for a worker: kept
    audit = (await api.get_json("/api/deletions", user="root"))["deletions"]
    assert [(a["what"], a["reason"]) for a in audit] == [("batch", "retention"), ("file", "retention")]
    assert (await worker(api).run_once()) > 0  # its file is there to read


async def test_default_keeps_everything(api):
    path, _ = await uploaded(api, os.urandom(10_000))
    assert await api.client.app[RETENTION].apply(utcnow() + 10_000 * DAY) == {"batches": 0, "files": 0}
    assert (await api.head(path)).status == 200


async def test_one_node_at_a_time(api_with, database_url):
    api = await api_with(keep_batches_days=1)
    _, batch_id = await uploaded(api, os.urandom(10_000))
    await worker(api).run_once()  # not a ZIP: the batch fails, and is finished
    assert (await api.get_json(f"/api/batches/{batch_id}"))["status"] == "failed"
    repo, retention = api.client.app[REMOVALS], api.client.app[RETENTION]
    if database_url.startswith("postgresql"):
        async with repo.exclusively(LOCK_KEY) as mine:  # another node's pass
            assert mine
            assert await retention.apply(utcnow() + 2 * DAY) == {"batches": 0, "files": 0}
    # (SQLite serves one node: its pass always runs.)
    assert await retention.apply(utcnow() + 2 * DAY) == {"batches": 1, "files": 0}


async def test_a_soak_of_uploads_and_deletions_keeps_the_disk_flat(api):
    """Forty 1 MiB uploads, each deleted once complete; the disk ends as it started, and never
    holds more than the few uploads in flight."""

    def used() -> int:
        return sum(
            p.stat().st_size
            for root in local_roots(api)
            for p in root.rglob("*")
            if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm") and p.name != "secret_key"
        )

    start, peak = used(), 0
    for _ in range(40):
        _, batch_id = await uploaded(api, os.urandom(1024 * 1024))
        peak = max(peak, used() - start)
        assert (await api.client.delete(f"/api/batches/{batch_id}", headers=api.auth())).status == 204
    assert used() == start
    assert peak <= 2 * 1024 * 1024


async def test_a_batch_read_again_after_it_was_found_due_keeps_its_file(api_with):
    """Retention found the batch due; an admin then has it read again: its file stays (the
    pass leaves it), and the reading completes. Found by review."""
    api = await api_with(keep_files_days=1)
    await register_task(api)
    path, batch_id = await processed_and_corrected(api, exam(22))
    due = await api.client.app[REMOVALS].due(utcnow() + DAY, files_only=True)
    assert due == [path.rsplit("/", 1)[1]]
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth("root"))
    assert resp.status == 202
    assert await api.client.app[SERVICE].retire(due[0], whole=False) is False
    assert (await process(api, batch_id, [worker(api)]))["status"] == "completed"
    sheets = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    assert [s["status"] for s in sheets] != ["failed"] * len(sheets) and all(s["answers"] for s in sheets)
    assert (await api.get_json(f"/api/batches/{batch_id}"))["file_deleted_at"] is None


async def test_after_retention_the_review_picture_is_gone_and_says_why(api_with):
    api = await api_with(keep_files_days=1)
    await register_task(api)
    _, batch_id = await processed_and_corrected(api, exam(21))
    sheet = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"][0]
    assert await api.client.app[RETENTION].apply(utcnow() + 2 * DAY) == {"batches": 0, "files": 1}
    resp = await api.client.get(f"/api/sheets/{sheet['sheet_id']}/review.png", headers=api.auth())
    detail = (await resp.json())["detail"]
    assert resp.status == 410 and "retention" in detail and "/" not in detail.split("on ")[0]
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth("root"))
    assert resp.status == 409
