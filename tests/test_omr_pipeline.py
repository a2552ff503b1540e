"""End to end: sheets rendered with known answers and scanned by the simulator are zipped,
uploaded over tus, listed and read by workers, and their answers land in the database."""

import asyncio
import csv
import io
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from omr_tus.batches.worker import Worker
from omr_tus.http.keys import FILES, REPO, SETTINGS
from omr_tus.omr.simulate import EASY, HARD, MEDIUM, simulate_sheet
from omr_tus.omr.template import Template

from .helpers import eventually

TEMPLATE = json.loads(
    (Path(__file__).resolve().parents[1] / "config" / "templates" / "exam-60-mcq4.json").read_text()
)
TASK = "11600111"
KEY = {
    "options": {"questions_in_order": ["q1..60"], "answers_in_order": ["A"] * 60},
    "marking_schemes": {"DEFAULT": {"correct": "1", "incorrect": "0", "unmarked": "0"}},
}


async def register_task(api, task_id=TASK, template=TEMPLATE, answer_key=KEY):
    resp = await api.client.post(
        "/api/tasks",
        json={"task_id": task_id, "name": "Physics", "template": template, "answer_key": answer_key},
        headers=api.auth("root"),
    )
    assert resp.status == 201, await resp.text()


def zipped(sheets, extra: dict | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for sheet in sheets:
            ok, data = cv2.imencode(".jpg", sheet.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            z.writestr(f"scans/{sheet.student_id}.jpg", data.tobytes())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return out.getvalue()


async def upload(api, data: bytes, **meta) -> str:
    path = await api.create(len(data), {"filename": "exam.zip", **meta})
    resp = await api.patch(path, 0, data)
    assert resp.status == 204
    return resp.headers["Batch-Id"]


async def process(api, batch_id: str, workers: list[Worker], timeout: float = 300) -> dict:
    """The batch's progress once the workers, each taking its turn in every round, completed or failed it."""

    async def round_done() -> dict:
        await asyncio.gather(*(w.run_once() for w in workers))
        return await api.get_json(f"/api/batches/{batch_id}/progress")

    return await eventually(
        round_done,
        lambda progress: progress["status"] in ("completed", "failed"),
        timeout=timeout,
        interval=0.02,
    )


def worker(api, name="w1", lease=120.0) -> Worker:
    return Worker(
        api.client.app[REPO], api.client.app[SETTINGS], api.client.app[FILES], name=name, lease=lease
    )


async def test_zip_with_qr_end_to_end(api):
    await register_task(api)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(7)
    sheets = [
        simulate_sheet(template, rng, level, task_id=TASK)
        for level in (EASY, EASY, MEDIUM, MEDIUM, HARD, HARD)
    ]
    batch_id = await upload(
        api, zipped(sheets, {"__MACOSX/x": b"", "notes.txt": b"hi"}), upload_type="zip_with_qr"
    )
    progress = await process(api, batch_id, [worker(api, "w1"), worker(api, "w2")])
    assert progress == {
        "batch_id": batch_id,
        "status": "completed",
        "total_sheets": 6,
        "processed_sheets": 6,
        "failed_sheets": 0,
        "progress_percentage": 100.0,
    }
    results = await api.get_json(f"/api/batches/{batch_id}/results")
    by_student = {s["student_id"]: s for s in results["sheets"]}
    for sheet in sheets:
        got = by_student[sheet.student_id]
        assert got["task_id"] == TASK and got["page"] == 1
        if got["status"] == "ok":  # nothing confidently wrong
            for column, truth in sheet.truth.items():
                if truth is not None:
                    assert got["answers"][column] == truth, (sheet.student_id, column)
            expected = sum(1 for q in range(1, 61) if got["answers"][f"q{q}"] == "A")
            assert got["score"] == expected
    assert sum(s["status"] == "ok" for s in results["sheets"]) >= 4
    batch = await api.get_json(f"/api/batches/{batch_id}")
    assert batch["skipped"] == [
        {"entry": "notes.txt", "reason": "not a sheet image (JPEG, PNG, TIFF or PDF)"}
    ]

    resp = await api.client.get(f"/api/batches/{batch_id}/results.csv", headers=api.auth())
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0][:6] == ["source", "page", "task_id", "student_id", "status", "score"]
    assert "q60" in rows[0] and len(rows) == 7
    needs = await api.get_json(f"/api/batches/{batch_id}/results?status=failed")
    assert needs["sheets"] == []


async def test_zip_no_qr_uses_the_upload_task_and_file_names(api):
    await register_task(api)
    template = Template.parse(TEMPLATE)
    sheets = [simulate_sheet(template, np.random.default_rng(11), EASY, task_id=TASK)]
    batch_id = await upload(api, zipped(sheets), upload_type="zip_no_qr", task_id=TASK)
    await process(api, batch_id, [worker(api)])
    (sheet,) = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    assert sheet["task_id"] == TASK and sheet["status"] in ("ok", "needs_review")


async def test_bad_sheets_fail_with_reasons_and_the_batch_completes(api):
    await register_task(api)
    template = Template.parse(TEMPLATE)
    good = simulate_sheet(template, np.random.default_rng(3), EASY, task_id=TASK)
    blank = np.full((2339, 1654), 255, np.uint8)
    _, blank_png = cv2.imencode(".png", blank)
    huge = io.BytesIO()
    Image.new("1", (30000, 30000)).save(huge, "PNG")  # 900 megapixels once decoded
    data = zipped(
        [good],
        {
            "broken.jpg": b"\xff\xd8\xff\xe0" + b"\0" * 50,
            "white.png": blank_png.tobytes(),
            "../../escape.png": blank_png.tobytes(),
            "huge.png": huge.getvalue(),
            "bomb.png": b"\0" * (64 * 1024 * 1024),
        },
    )
    batch_id = await upload(api, data, upload_type="zip_with_qr")
    progress = await process(api, batch_id, [worker(api)])
    assert (
        progress["status"] == "completed" and progress["total_sheets"] == 4 and progress["failed_sheets"] == 3
    )
    failed = (await api.get_json(f"/api/batches/{batch_id}/results?status=failed"))["sheets"]
    assert {s["source"] for s in failed} == {"broken.jpg", "white.png", "huge.png"}
    assert all(s["error"] for s in failed)
    skipped = {s["entry"]: s["reason"] for s in (await api.get_json(f"/api/batches/{batch_id}"))["skipped"]}
    assert "unsafe path" in skipped["../../escape.png"] and "compression ratio" in skipped["bomb.png"]


async def test_unknown_task_in_qr_fails_the_sheet(api):
    template = Template.parse(TEMPLATE)
    sheet = simulate_sheet(template, np.random.default_rng(5), EASY, task_id="99999999")
    batch_id = await upload(api, zipped([sheet]), upload_type="zip_with_qr")
    await process(api, batch_id, [worker(api)])
    (result,) = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    assert result["status"] == "failed" and "99999999 has no registered template" in result["error"]


async def test_worker_killed_mid_batch(api):
    """w1 claims sheets and dies; after its lease w2 reads them: no missing or duplicate answers."""
    await register_task(api)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(9)
    batch_id = await upload(
        api,
        zipped([simulate_sheet(template, rng, EASY, task_id=TASK) for _ in range(3)]),
        upload_type="zip_with_qr",
    )
    repo = api.client.app[REPO]
    await api.batch(batch_id)  # in durable storage: ready to be listed
    dying = worker(api, "dying", lease=0.3)
    batch = await repo.claim_batch(dying.name, dying.lease)
    await dying._ingest(batch)
    assert len(await repo.claim_sheets(dying.name, 2, dying.lease)) == 2  # ...and then it is killed
    progress = await process(api, batch_id, [worker(api, "w2")])
    assert progress["status"] == "completed" and progress["processed_sheets"] + progress["failed_sheets"] == 3
    results = await api.get_json(f"/api/batches/{batch_id}/results")
    assert len(results["sheets"]) == 3
    for sheet in results["sheets"]:
        assert len(sheet["answers"]) in (0, len(template.columns))


async def test_readme_sql_examples_run(api):
    """The admin queries in the README run on this database and see the stored answers."""
    import re

    from sqlalchemy import text

    from omr_tus.http.keys import ENGINE

    await register_task(api)
    template = Template.parse(TEMPLATE)
    sheet = simulate_sheet(template, np.random.default_rng(21), EASY, task_id=TASK)
    batch_id = await upload(api, zipped([sheet]), upload_type="zip_with_qr")
    await process(api, batch_id, [worker(api)])
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```sql\n(.*?)```", readme, re.S).group(1)
    queries = [q.strip() for q in block.split(";") if q.strip()]
    assert len(queries) == 3
    async with api.client.app[ENGINE].connect() as conn:
        student = (await conn.execute(text(queries[0].replace("'20250042'", f"'{sheet.student_id}'")))).all()
        difficulty = (await conn.execute(text(queries[1]))).all()
        review = (await conn.execute(text(queries[2]))).all()
    assert len(student) == len(template.columns)
    assert sum(row.students for row in difficulty) == len(template.columns)
    assert all(row.batch == batch_id for row in review)


async def test_multi_page_tiff_sources(api):
    """One sheet per page: page 2 of scans.tif is reported as scans.tif#p2."""
    await register_task(api)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(31)
    sheets = [simulate_sheet(template, rng, EASY, task_id=TASK) for _ in range(2)]
    frames = [
        Image.fromarray(s.image if s.image.ndim == 2 else cv2.cvtColor(s.image, cv2.COLOR_BGR2GRAY))
        for s in sheets
    ]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    batch_id = await upload(api, out.getvalue(), upload_type="images", task_id=TASK, filename="scans.tif")
    progress = await process(api, batch_id, [worker(api)])
    assert progress["total_sheets"] == 2
    results = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    assert [(s["source"], s["page"]) for s in results] == [("scans.tif", 1), ("scans.tif#p2", 2)]
    assert {s["student_id"] for s in results} == {s.student_id for s in sheets}
