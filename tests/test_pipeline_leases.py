"""Workers share batches through leases: one claim per sheet at a time, an expired lease is
claimed again, a worker that lost its lease cannot store a result, answers never duplicate."""

import asyncio
import io
import zipfile

from omr_tus.batches.ingest import list_pages
from omr_tus.http.keys import REPO, SETTINGS

from .test_ingest import png


async def uploaded_batch(api, entries: dict) -> str:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    data = out.getvalue()
    await api.register_task("11600111")
    path = await api.create(
        len(data), {"filename": "b.zip", "upload_type": "zip_no_qr", "task_id": "11600111"}
    )
    resp = await api.patch(path, 0, data)
    batch_id = resp.headers["Batch-Id"]
    await api.batch(batch_id)  # archived: in durable storage, ready to be ingested
    return batch_id


async def test_leases(api):
    repo = api.client.app[REPO]
    batch_id = await uploaded_batch(api, {f"s{i}.png": png() for i in range(3)} | {"readme.md": b"hi"})
    batch = await repo.claim_batch("w1", lease=60)
    assert batch.id == batch_id
    assert await repo.claim_batch("w2", lease=60) is None  # held by w1
    listing = list_pages(api.client.app[SETTINGS].durable_dir / batch.upload_id, "b.zip")
    await repo.add_sheets(batch.id, "w1", listing)
    progress = await api.get_json(f"/api/batches/{batch_id}/progress")
    assert (progress["status"], progress["total_sheets"]) == ("processing", 3)
    assert (await api.get_json(f"/api/batches/{batch_id}"))["skipped"] == [
        {"entry": "readme.md", "reason": "not a sheet image (JPEG, PNG, TIFF or PDF)"}
    ]

    first = await repo.claim_sheets("w1", 2, lease=0.2)
    assert len(first) == 2
    rest = await repo.claim_sheets("w2", 5, lease=60)
    assert [s.id for s in rest] == [s.id for s in await repo.sheets_of(batch_id, None, None, 0)][2:]
    await asyncio.sleep(0.3)  # w1 "died": its leases run out
    again = await repo.claim_sheets("w2", 5, lease=60)
    assert sorted(s.id for s in again) == sorted(s.id for s in first)
    answer = [dict(column="q1", value="B", flags="", confidence=0.9)]
    assert not await repo.save_sheet(first[0].id, "w1", dict(status="ok"), answer)  # lease lost
    for sheet in list(again) + list(rest):
        assert await repo.save_sheet(sheet.id, "w2", dict(status="ok", student_id="s"), answer)
        assert not await repo.save_sheet(sheet.id, "w2", dict(status="ok"), answer)  # stored once
        await repo.update_progress(batch_id)
    progress = await api.get_json(f"/api/batches/{batch_id}/progress")
    assert progress == {
        "batch_id": batch_id,
        "status": "completed",
        "total_sheets": 3,
        "processed_sheets": 3,
        "failed_sheets": 0,
        "progress_percentage": 100.0,
    }
    results = await api.get_json(f"/api/batches/{batch_id}/results")
    assert [s["answers"] for s in results["sheets"]] == [{"q1": "B"}] * 3


async def test_unreadable_zip_fails_the_batch(api):
    repo = api.client.app[REPO]
    path = await api.create(5, {"filename": "b.zip"})
    batch_id = (await api.patch(path, 0, b"PK\x03\x04x")).headers["Batch-Id"]
    await api.batch(batch_id)
    batch = await repo.claim_batch("w1", lease=60)
    listing = list_pages(api.client.app[SETTINGS].durable_dir / batch.upload_id, batch.filename)
    await repo.add_sheets(batch.id, "w1", listing)
    body = await api.get_json(f"/api/batches/{batch_id}")
    assert body["status"] == "failed" and "neither a ZIP" in body["error"]


async def test_a_listing_that_lost_its_lease_stores_nothing(api):
    repo = api.client.app[REPO]
    batch_id = await uploaded_batch(api, {f"s{i}.png": png() for i in range(2)})
    batch = await repo.claim_batch("w1", lease=0.1)
    listing = list_pages(api.client.app[SETTINGS].durable_dir / batch.upload_id, "b.zip")
    await asyncio.sleep(0.2)  # w1 is slow: its lease runs out and w2 takes the batch over
    assert (await repo.claim_batch("w2", lease=60)).id == batch_id
    assert not await repo.add_sheets(batch.id, "w1", listing)
    assert await repo.add_sheets(batch.id, "w2", listing)
    assert len(await repo.sheets_of(batch_id, None, None, 0)) == 2  # once, not twice


async def test_a_long_listing_keeps_its_lease(api, monkeypatch):
    """Listing a large file may outlast a lease: the worker renews it, so no other worker lists
    the batch meanwhile."""
    from omr_tus.batches import worker as worker_module
    from omr_tus.batches.worker import Worker
    from omr_tus.http.keys import FILES

    def slow_listing(*args):
        import time

        time.sleep(1.0)
        return list_pages(*args)

    monkeypatch.setattr(worker_module, "list_pages", slow_listing)
    repo = api.client.app[REPO]
    batch_id = await uploaded_batch(api, {"s.png": png()})
    w1 = Worker(
        repo, api.client.app[SETTINGS], api.client.app[FILES], name="w1", lease=0.3, sheets_per_claim=0
    )
    listing = asyncio.get_running_loop().create_task(w1.run_once())
    for _ in range(8):
        await asyncio.sleep(0.15)
        assert await repo.claim_batch("w2", lease=60) is None
    await listing
    assert (await api.get_json(f"/api/batches/{batch_id}/progress"))["total_sheets"] == 1
