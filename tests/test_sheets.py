"""One sheet: its answers, the review picture, an admin's corrections (who, when; kept when the
batch is read again) and GET /api/me."""

from __future__ import annotations

import csv
import io

import cv2
import numpy as np

from omr_tus.omr.review import COLOURS
from omr_tus.omr.simulate import EASY, simulate_sheet
from omr_tus.omr.template import Template

from .test_omr_pipeline import TASK, TEMPLATE, process, register_task, upload, worker, zipped


async def processed_batch(api) -> tuple[str, list[dict]]:
    await register_task(api)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(21)
    sheets = [simulate_sheet(template, rng, EASY, task_id=TASK) for _ in range(2)]
    batch_id = await upload(api, zipped(sheets), upload_type="zip_with_qr")
    assert (await process(api, batch_id, [worker(api)]))["status"] == "completed"
    return batch_id, (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]


async def test_me(api):
    me = await api.get_json("/api/me")
    assert me["username"] == "alice" and me["is_admin"] is False and isinstance(me["id"], int)
    assert (await api.get_json("/api/me", user="root"))["is_admin"] is True


async def test_sheet_and_review_picture(api):
    batch_id, sheets = await processed_batch(api)
    first = sheets[0]
    got = await api.get_json(f"/api/sheets/{first['sheet_id']}")
    assert got == first and got["batch_id"] == batch_id and got["corrections"] == {}
    await api.get_json(f"/api/sheets/{first['sheet_id']}", user="bob", status=404)
    await api.get_json("/api/sheets/99999999", status=404)
    await api.get_json("/api/sheets/39879201812", status=404)  # beyond a 32-bit id: no sheet, no 500
    await api.get_json("/api/sheets/%C2%B2", status=404)  # a Unicode digit
    await api.get_json("/api/sheets/abc", status=404)

    resp = await api.client.get(f"/api/sheets/{first['sheet_id']}/review.png", headers=api.auth())
    assert resp.status == 200 and resp.content_type == "image/png"
    picture = cv2.imdecode(np.frombuffer(await resp.read(), np.uint8), cv2.IMREAD_COLOR)
    width, height = Template.parse(TEMPLATE).page
    assert picture.shape[1] == width and height < picture.shape[0] < height * 1.1  # the page under a legend
    marked = np.all(picture == COLOURS["marked"], axis=2).sum()
    blank = np.all(picture == COLOURS["blank"], axis=2).sum()
    assert marked > 1000 and blank > 1000  # every bubble drawn, the marked ones in their colour
    resp = await api.client.get(f"/api/sheets/{first['sheet_id']}/review.png", headers=api.auth("bob"))
    assert resp.status == 404


async def test_corrections_are_recorded_scored_and_survive_reprocessing(api):
    batch_id, sheets = await processed_batch(api)
    sheet = next(s for s in sheets if s["answers"]["q1"] != "A")  # the key is A everywhere
    url = f"/api/sheets/{sheet['sheet_id']}/answers/q1"
    resp = await api.client.put(url, json={"value": "A"}, headers=api.auth())  # alice owns it, not admin
    assert resp.status == 403
    for bad, status in (({"value": 3}, 400), ("nope", 400)):
        resp = await api.client.put(url, json=bad, headers=api.auth("root"))
        assert resp.status == status
    resp = await api.client.put(
        f"/api/sheets/{sheet['sheet_id']}/answers/q999", json={"value": "A"}, headers=api.auth("root")
    )
    assert resp.status == 404 and "q999" in (await resp.json())["detail"]

    resp = await api.client.put(url, json={"value": "A"}, headers=api.auth("root"))
    assert resp.status == 200
    fixed = await resp.json()
    assert fixed["answers"]["q1"] == "A" and fixed["score"] == sheet["score"] + 1
    assert fixed["corrections"]["q1"]["original"] == sheet["answers"]["q1"]
    assert fixed["corrections"]["q1"]["by"] == "root" and fixed["corrections"]["q1"]["at"]

    resp = await api.client.get(f"/api/batches/{batch_id}/results.csv", headers=api.auth())
    rows = {r["source"]: r for r in csv.DictReader(io.StringIO(await resp.text()))}
    assert rows[sheet["source"]]["q1"] == "A" and float(rows[sheet["source"]]["score"]) == fixed["score"]

    # read the batch again: the reading replaces the answers, the correction stays on top
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth())
    assert resp.status == 403
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth("root"))
    assert resp.status == 202 and (await resp.json())["status"] == "processing"
    resp = await api.client.post(f"/api/batches/{batch_id}/reprocess", headers=api.auth("root"))
    assert resp.status == 409
    assert (await process(api, batch_id, [worker(api, "w2")]))["status"] == "completed"
    again = await api.get_json(f"/api/sheets/{sheet['sheet_id']}")
    assert again["answers"]["q1"] == "A" and again["score"] == fixed["score"]
    assert again["corrections"]["q1"]["by"] == "root"
