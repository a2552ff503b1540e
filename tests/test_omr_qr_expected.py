"""Issue 13 item 5: a QR code is required only where the upload type promises one. In
`zip_no_qr` and `images` batches an empty qr box is expected; a code printed there that does
not read (damaged) or names another task still sends the sheet to review."""

from __future__ import annotations

import cv2
import numpy as np

from omr_tus.omr.reader import read_sheet
from omr_tus.omr.render import Print
from omr_tus.omr.simulate import EASY, SimulatedSheet, simulate_sheet
from omr_tus.omr.template import Template
from tests.test_omr_pipeline import TASK, TEMPLATE, process, register_task, upload, worker, zipped

EXAM = Template.parse(TEMPLATE)
MASTER = Print(qr=False)  # one master copied for every student: its qr box stays blank
SHEETS = 30


def damaged(sheet: SimulatedSheet) -> SimulatedSheet:
    """The sheet with its QR code scribbled over (its finder corners still print)."""
    image = sheet.image.copy()
    q, scale = EXAM.qr, image.shape[1] / EXAM.page[0]
    x0, y0, size = (round(v * scale) for v in (q.x + q.size * 0.3, q.y + q.size * 0.3, q.size * 0.4))
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 2, (8, 8)).astype(np.uint8) * 255
    scribble = np.kron(blocks, np.ones((size // 8 + 1, size // 8 + 1), np.uint8))[:size, :size]
    target = image[y0 : y0 + size, x0 : x0 + size]
    target[:] = scribble if target.ndim == 2 else scribble[:, :, None]
    return SimulatedSheet(image, sheet.task_id, sheet.student_id + "-damaged", sheet.answers, sheet.truth)


def test_blank_qr_box_is_review_only_where_a_code_is_expected():
    sheet = simulate_sheet(EXAM, np.random.default_rng(4), EASY, task_id=TASK, style=MASTER)
    assert read_sheet(sheet.image, EXAM).error == "QR code unreadable"
    result = read_sheet(sheet.image, EXAM, qr_expected=False)
    assert (result.status, result.error, result.answers) == ("ok", None, sheet.truth)


def test_damaged_qr_is_review_even_where_none_is_expected():
    sheet = damaged(simulate_sheet(EXAM, np.random.default_rng(4), EASY, task_id=TASK))
    result = read_sheet(sheet.image, EXAM, qr_expected=False)
    assert (result.status, result.error) == ("needs_review", "QR code unreadable")


async def test_clean_zip_no_qr_batch_is_not_sent_to_review(api):
    """A clean batch of our own sheets, copied from a master without codes: review <= 2 %;
    the one damaged code and the sheet of another task are the only sheets for review."""
    await register_task(api)
    rng = np.random.default_rng(2026)
    sheets = [simulate_sheet(EXAM, rng, EASY, task_id=TASK, style=MASTER) for _ in range(SHEETS)]
    stray = simulate_sheet(EXAM, rng, EASY, task_id="22200222")
    broken = damaged(simulate_sheet(EXAM, rng, EASY, task_id=TASK))
    batch_id = await upload(api, zipped([*sheets, stray, broken]), upload_type="zip_no_qr", task_id=TASK)
    progress = await process(api, batch_id, [worker(api)])
    assert (progress["status"], progress["total_sheets"]) == ("completed", SHEETS + 2)
    results = {s["source"]: s for s in (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]}
    clean = [results[f"scans/{s.student_id}.jpg"] for s in sheets]
    review = [s for s in clean if s["status"] != "ok"]
    assert len(review) <= 0.02 * SHEETS, [s["error"] for s in review]
    for sheet, got in zip(sheets, clean):
        if got["status"] == "ok":
            assert got["answers"] == sheet.truth
    broken, stray = results[f"scans/{broken.student_id}.jpg"], results[f"scans/{stray.student_id}.jpg"]
    assert (broken["status"], broken["error"]) == ("needs_review", "QR code unreadable")
    assert stray["status"] == "needs_review" and "names task 22200222" in stray["error"]


async def test_an_images_upload_without_qr_code_reads_ok(api):
    await register_task(api)
    sheet = simulate_sheet(EXAM, np.random.default_rng(6), EASY, task_id=TASK, style=MASTER)
    data = cv2.imencode(".png", sheet.image)[1].tobytes()
    batch_id = await upload(api, data, upload_type="images", task_id=TASK, filename=f"{sheet.student_id}.png")
    await process(api, batch_id, [worker(api)])
    (got,) = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    assert (got["status"], got["error"], got["answers"]) == ("ok", None, sheet.truth)
