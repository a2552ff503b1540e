"""OMRChecker's public samples through the whole product: each folder registered as a task
from its own files (multipart POST /api/tasks), its images zipped and uploaded as zip_no_qr,
read by a worker, and every answer and score compared with what OMRChecker read."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from omr_tus.omr.reader import read_sheet
from omr_tus.omr.template import Template

from .conftest import missing_part, omr_samples
from .samples import Disagreement, compare, compare_sheet, sample_tasks
from .test_omr_pipeline import process, upload, worker

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def task_form(task, task_id: str) -> aiohttp.FormData:
    """The task as an OMRChecker user has it: the folder's own files."""
    form = aiohttp.FormData()
    form.add_field("task_id", task_id)
    form.add_field("name", task.name)
    for field, value in (
        ("template", task.template),
        ("config", task.config),
        ("evaluation", task.evaluation),
    ):
        if value is not None:
            form.add_field(
                field, json.dumps(value).encode(), filename=f"{field}.json", content_type="application/json"
            )
    for name, content in task.assets.items():
        form.add_field("asset", content, filename=name, content_type="application/octet-stream")
    return form


def explained(d: Disagreement) -> bool:
    """A disagreement must have its row in BENCHMARKS.md's table: | file | question | ..."""
    return any(line.startswith(f"| {d.file} | {d.column} |") for line in BENCHMARKS.read_text().splitlines())


async def test_every_sample_folder_reads_like_omrchecker(api):
    root = omr_samples() or missing_part("the shared OMR samples are not here (set OMR_TUS_SAMPLES)")
    tasks = sample_tasks(root)
    assert len(tasks) >= 8 and sum(len(t.expected) for t in tasks) >= 12
    compared, differ = 0, []
    for n, task in enumerate(tasks):
        task_id = f"9{n:07d}"
        resp = await api.client.post("/api/tasks", data=task_form(task, task_id), headers=api.auth("root"))
        assert resp.status == 201, await resp.text()
        assert {a["name"] for a in (await resp.json())["assets"]} == set(task.assets)
        batch_id = await upload(api, task.zipped(), upload_type="zip_no_qr", task_id=task_id)
        progress = await process(api, batch_id, [worker(api)])
        assert progress["status"] == "completed" and progress["failed_sheets"] == 0, progress
        sheets = {s["source"]: s for s in (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]}
        assert set(sheets) == set(task.expected), task.name
        count, wrong = compare(task, sheets)
        compared += count
        differ += wrong
        columns = [c for c in next(iter(task.expected.values())) if c not in ("file", "score")]
        resp = await api.client.get(f"/api/batches/{batch_id}/results.csv", headers=api.auth())
        assert next(csv.reader(io.StringIO(await resp.text())))[6:] == columns  # OMRChecker's names, in order
        for file, row in task.expected.items():
            sheet = sheets[file]
            assert list(sheet["answers"]) == columns
            assert sheet["task_id"] == task_id and sheet["status"] != "failed", (file, sheet["error"])
            if task.evaluation and not any(d.file.endswith(file) for d in wrong):
                assert sheet["score"] == float(row["score"]), file  # same answers, same score
            for d in wrong:  # never confidently wrong
                if d.file.endswith(file):
                    assert sheet["status"] == "needs_review" and "ambiguous" in d.flags, d
    print(f"\n{compared - len(differ)}/{compared} answers agree with OMRChecker")
    assert compared >= 280
    assert (compared - len(differ)) / compared >= 0.99, differ
    unexplained = [d for d in differ if not explained(d)]
    assert not unexplained, f"explain these in BENCHMARKS.md (what the image shows): {unexplained}"


def _degraded(image: np.ndarray, how: str) -> np.ndarray:
    """The photo made worse the way phones and messengers do."""
    h, w = image.shape[:2]
    if how == "jpeg40":
        return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], cv2.IMREAD_COLOR)
    if how == "smaller":
        return cv2.resize(image, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    if how == "blurred":
        return cv2.GaussianBlur(image, (0, 0), 1.5)
    if how == "shadowed":
        return np.clip(image * np.linspace(0.6, 1.1, w)[None, :, None], 0, 255).astype(np.uint8)
    if how == "turned":
        return cv2.warpAffine(
            image, cv2.getRotationMatrix2D((w / 2, h / 2), 3, 1.0), (w, h), borderValue=(30, 30, 30)
        )
    noise = np.random.default_rng(1).normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("how", ["jpeg40", "smaller", "blurred", "shadowed", "turned", "noisy"])
def test_degraded_photos_are_never_confidently_wrong(how):
    """Every sample photo, degraded: read like OMRChecker read the original, or flagged."""
    root = omr_samples() or missing_part("the shared OMR samples are not here (set OMR_TUS_SAMPLES)")
    read = flagged = 0
    for task in sample_tasks(root):
        template = Template.parse(task.template, task.config, task.assets)
        for file in task.expected:
            r = read_sheet(_degraded(cv2.imread(str(task.folder / file)), how), template)
            assert r.status != "failed", (file, r.error)
            _, differ = compare_sheet(task, file, {"answers": r.answers, "flags": r.flags})
            for d in differ:
                assert r.status == "needs_review" and "ambiguous" in d.flags, d
            read += r.status == "ok"
            flagged += bool(differ)
    assert read >= 9 and flagged <= 2, (read, flagged)
