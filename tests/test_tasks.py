"""POST/PUT/GET /api/tasks: as JSON, or as an OMRChecker user's own files (multipart), with
refusals that name what to fix."""

from __future__ import annotations

import json

import aiohttp
import cv2
import numpy as np
import pytest

from .test_omr_pipeline import TASK, TEMPLATE, register_task

MARKER = cv2.imencode(".png", np.pad(np.zeros((20, 20), np.uint8), 10, constant_values=255))[1].tobytes()
OMR_TEMPLATE = {
    "pageDimensions": [600, 800],
    "bubbleDimensions": [30, 30],
    "preProcessors": [
        {"name": "CropPage", "options": {"morphKernel": [10, 10]}},
        {
            "name": "CropOnMarkers",
            "options": {"relativePath": "marks/omr_marker.png", "sheetToMarkerWidthRatio": 17},
        },
    ],
    "fieldBlocks": {
        "Mcq": {
            "fieldType": "QTYPE_MCQ4",
            "fieldLabels": ["q1..4"],
            "origin": [100, 100],
            "bubblesGap": 50,
            "labelsGap": 50,
        }
    },
}
CSV_KEY = {"source_type": "csv", "options": {"answer_key_csv_path": "key.csv"}}
CONFIG = {"dimensions": {"processing_width": 700, "processing_height": 900}}


def form(
    task_id=TASK,
    template=OMR_TEMPLATE,
    config=CONFIG,
    evaluation=CSV_KEY,
    assets=(("marks/omr_marker.png", MARKER), ("key.csv", b"q1,A\nq2,B\nq3,C\nq4,D\n")),
    raw: dict[str, bytes] | None = None,
) -> aiohttp.FormData:
    data = aiohttp.FormData()
    if task_id is not None:
        data.add_field("task_id", task_id)
    data.add_field("name", "Physics")
    for field, value in (("template", template), ("config", config), ("evaluation", evaluation)):
        if value is not None:
            data.add_field(field, json.dumps(value).encode(), filename=f"{field}.json")
    for name, content in assets:
        data.add_field("asset", content, filename=name)
    for field, content in (raw or {}).items():
        data.add_field(field, content, filename="x")
    return data


async def test_omrchecker_files_register_a_task(api):
    resp = await api.client.post("/api/tasks", data=form(), headers=api.auth("root"))
    assert resp.status == 201, await resp.text()
    task = await resp.json()
    assert task["config"] == CONFIG and task["answer_key"] == CSV_KEY and task["template"] == OMR_TEMPLATE
    assert task["assets"] == [
        {"name": "key.csv", "size": 20},
        {"name": "marks/omr_marker.png", "size": len(MARKER)},
    ]
    # PUT keeps the files not sent again, replaces those sent
    resp = await api.client.put(
        f"/api/tasks/{TASK}",
        data=form(task_id=None, assets=[("key.csv", b"q1,B\n")]),
        headers=api.auth("root"),
    )
    assert resp.status == 200, await resp.text()
    assert {a["name"]: a["size"] for a in (await resp.json())["assets"]} == {
        "key.csv": 5,
        "marks/omr_marker.png": len(MARKER),
    }
    assert (await api.get_json(f"/api/tasks/{TASK}", user="root"))["name"] == "Physics"


@pytest.mark.parametrize(
    "changes,detail",
    [
        (
            dict(assets=[("key.csv", b"q1,A\n")]),
            "preProcessors[1].options.relativePath: the file 'marks/omr_marker.png' was not sent",
        ),
        (
            dict(assets=[("marks/omr_marker.png", MARKER)]),
            "answer_key_csv_path: the file 'key.csv' was not sent",
        ),
        (dict(assets=[("marks/omr_marker.png", b"GIF89a"), ("key.csv", b"")]), "is not a PNG or JPEG image"),
        (dict(assets=[("../etc/passwd", b"x")]), "Each 'asset' file needs a file name"),
        (dict(assets=[("key.csv", b"a"), ("key.csv", b"b")]), "each name once"),
        (dict(template=None), "Send the template.json as the file field 'template'"),
        (dict(config={"dimensions": {"processing_width": "wide"}}), "config.dimensions.processing_width"),
        (dict(raw={"template": b"{not json"}), "The template file is not valid JSON"),
        (dict(raw={"answers": b"x"}), "Unknown form field 'answers'"),
        (dict(task_id="12"), "task_id must be exactly 8 digits"),
    ],
)
async def test_multipart_refusals_say_what_to_fix(api, changes, detail):
    resp = await api.client.post("/api/tasks", data=form(**changes), headers=api.auth("root"))
    assert resp.status == 400
    assert detail in (await resp.json())["detail"]
    await api.get_json(f"/api/tasks/{TASK}", user="root", status=404)  # nothing half-registered


async def test_an_oversized_asset_is_refused_while_streaming(api):
    resp = await api.client.post(
        "/api/tasks", data=form(assets=[("big.png", b"\0" * (9 * 1024 * 1024))]), headers=api.auth("root")
    )
    assert resp.status == 400 and "longer than" in (await resp.json())["detail"]


@pytest.mark.parametrize(
    "body,status,detail",
    [
        ({"task_id": "123", "template": TEMPLATE}, 400, "8 digits"),
        ({"task_id": TASK, "template": {"pageDimensions": [100]}}, 400, "pageDimensions"),
        ({"task_id": TASK, "template": TEMPLATE, "answer_key": {"source_type": "xml"}}, 400, "source_type"),
        ({"task_id": TASK, "template": OMR_TEMPLATE}, 400, "multipart"),
    ],
)
async def test_json_refusals(api, body, status, detail):
    resp = await api.client.post("/api/tasks", json=body, headers=api.auth("root"))
    assert resp.status == status
    assert detail in (await resp.json())["detail"]


async def test_tasks_admin_conflict_and_replace(api):
    resp = await api.client.post(
        "/api/tasks", json={"task_id": TASK, "template": TEMPLATE}, headers=api.auth()
    )
    assert resp.status == 403
    await register_task(api)
    resp = await api.client.post(
        "/api/tasks", json={"task_id": TASK, "template": TEMPLATE}, headers=api.auth("root")
    )
    assert resp.status == 409
    resp = await api.client.put(
        f"/api/tasks/{TASK}", json={"name": "Chemistry", "template": TEMPLATE}, headers=api.auth("root")
    )
    assert resp.status == 200 and (await resp.json())["name"] == "Chemistry"
    task = await api.get_json(f"/api/tasks/{TASK}", user="root")
    assert task["template"] == TEMPLATE and task["name"] == "Chemistry"
    await api.get_json("/api/tasks/00000000", user="root", status=404)
    # a task holds its answer key: to a user who is not an admin it does not exist
    body = await api.get_json(f"/api/tasks/{TASK}", status=404)
    assert body == {"detail": f"Task {TASK} not found"}
