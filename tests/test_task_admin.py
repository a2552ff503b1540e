"""The Tasks page's API: the task list, the template drawn over a blank sheet, and the
registered check the upload page makes before the first byte."""

from __future__ import annotations

import cv2
import numpy as np

from .test_omr_pipeline import TASK, TEMPLATE, register_task
from .test_tasks import form


async def test_the_task_list_is_for_admins(api):
    assert (await api.get_json("/api/tasks", "root")) == {"tasks": [], "total": 0, "limit": 100, "offset": 0}
    await register_task(api)
    resp = await api.client.post("/api/tasks", data=form(task_id="11600222"), headers=api.auth("root"))
    assert resp.status == 201, await resp.text()
    listed = await api.get_json("/api/tasks?limit=1", "root")
    assert listed["total"] == 2 and len(listed["tasks"]) == 1
    assert set(listed["tasks"][0]) == {"task_id", "name", "created_at", "updated_at"}
    every = await api.get_json("/api/tasks", "root")
    assert sorted(t["task_id"] for t in every["tasks"]) == [TASK, "11600222"]
    assert (await api.client.get("/api/tasks", headers=api.auth("alice"))).status == 403
    assert (await api.client.get("/api/tasks?limit=0", headers=api.auth("root"))).status == 400


async def test_the_preview_draws_the_template_over_a_blank_sheet(api):
    await register_task(api)
    resp = await api.client.get(f"/api/tasks/{TASK}/preview.png", headers=api.auth("root"))
    assert resp.status == 200 and resp.content_type == "image/png"
    image = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
    width, height = TEMPLATE["pageDimensions"]
    assert image.shape[1] == min(width, 1200)
    assert abs(image.shape[0] - round(height * image.shape[1] / width)) <= 1
    b, g, r = (image[..., i].astype(int) for i in range(3))
    coloured = (np.abs(b - g) > 60) | (np.abs(g - r) > 60)  # block frames, markers, the QR box
    assert coloured.mean() > 0.002
    assert (await api.client.get(f"/api/tasks/{TASK}/preview.png", headers=api.auth("alice"))).status == 403
    assert (await api.client.get("/api/tasks/99999999/preview.png", headers=api.auth("root"))).status == 404


async def test_an_omrchecker_template_previews_too(api):
    resp = await api.client.post("/api/tasks", data=form(), headers=api.auth("root"))
    assert resp.status == 201, await resp.text()
    resp = await api.client.get(f"/api/tasks/{TASK}/preview.png", headers=api.auth("root"))
    assert resp.status == 200
    image = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (800, 600)


async def test_anyone_signed_in_may_ask_whether_a_task_is_registered(api):
    answer = await api.get_json(f"/api/tasks/{TASK}/registered", "alice")
    assert answer == {"task_id": TASK, "registered": False}
    await register_task(api)
    assert (await api.get_json(f"/api/tasks/{TASK}/registered", "alice"))["registered"] is True
    resp = await api.client.get("/api/tasks/1234/registered", headers=api.auth("alice"))
    assert resp.status == 400 and "8 digits" in (await resp.json())["detail"]
