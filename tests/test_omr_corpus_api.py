"""Issue 13's corpus the way an exam office sends it: each class's task registered as
OMRChecker files (multipart: template and the marker or reference image it names), its sheets
zipped and uploaded as zip_no_qr. What the API stores must be what the reader reads from the
same page: no template, asset or QR expectation is lost on the way."""

from __future__ import annotations

import io
import zipfile

import cv2

from omr_tus.batches.ingest import decode_page
from omr_tus.omr.reader import read_sheet
from tests.corpus import CLASSES
from tests.test_omr_pipeline import process, upload, worker
from tests.test_tasks import form


async def test_every_class_reads_the_same_through_the_api(api):
    pages, expected = {}, {}
    for n, sheet_class in enumerate(CLASSES):
        task_id = f"{13000000 + n}"
        data = form(
            task_id=task_id,
            template=sheet_class.raw,
            config=None,
            evaluation=None,
            assets=list(sheet_class.assets.items()),
        )
        resp = await api.client.post("/api/tasks", data=data, headers=api.auth("root"))
        assert resp.status == 201, (sheet_class.name, await resp.text())
        sheet = next(sheet_class.sheets(1, 99))
        png = cv2.imencode(".png", sheet.image)[1].tobytes()
        page = decode_page(png, "x.png", 1, sheet_class.template.page[0])  # as the worker loads it
        expected[task_id] = read_sheet(page, sheet_class.template, qr_expected=False)
        pages[task_id] = png
    for task_id, png in pages.items():
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("sheet.png", png)
        batch_id = await upload(api, out.getvalue(), upload_type="zip_no_qr", task_id=task_id)
        await process(api, batch_id, [worker(api)])
        (got,) = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
        want = expected[task_id]
        assert (got["status"], got["error"], got["answers"], got["flags"]) == (
            want.status,
            want.error,
            want.answers,
            want.flags,
        ), task_id
