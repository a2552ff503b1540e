"""Issue 13 item 3: an evaluation.json whose key is a filled-in sheet (`answer_key_image_path`,
no CSV) is read with the task's template when the task is registered and stored as the key;
a key sheet that does not read confidently is refused, naming the questions."""

from __future__ import annotations

import cv2
import numpy as np

from omr_tus.omr.key_image import key_from_image, key_image_name
from omr_tus.omr.render import render_sheet
from omr_tus.omr.simulate import scan
from tests.corpus import CLASSES, DARK_DESK, TASK
from tests.test_omr_pipeline import process, upload, worker, zipped
from tests.test_tasks import form

FORM = next(c for c in CLASSES if c.name == "pencil")  # tests/corpus/form-100q.json, CropPage
QUESTIONS = [f"q{n}" for n in range(1, 101)]
KEY = dict(zip(QUESTIONS, np.random.default_rng(3).choice(list("ABCD"), 100).tolist()))
EVALUATION = {
    "source_type": "csv",
    "options": {
        "answer_key_csv_path": "answer_key.csv",
        "answer_key_image_path": "answer_key.jpg",
        "questions_in_order": ["q1..100"],
    },
    "marking_schemes": {"DEFAULT": {"correct": "1", "incorrect": "0", "unmarked": "0"}},
}


def key_sheet(answers: dict[str, str], seed: int = 1) -> np.ndarray:
    """The key filled in and scanned like the students' sheets."""
    page = render_sheet(FORM.printed, TASK, "key", answers, style=FORM.style)
    return scan(page, np.random.default_rng(seed), DARK_DESK)


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


async def register(api, image: np.ndarray):
    data = form(
        template=FORM.raw, config=None, evaluation=EVALUATION, assets=[("answer_key.jpg", jpeg(image))]
    )
    return await api.client.post("/api/tasks", data=data, headers=api.auth("root"))


async def test_key_read_from_image_is_stored_and_scores_sheets(api):
    resp = await register(api, key_sheet(KEY))  # roll number and booklet left blank: not key questions
    assert resp.status == 201, await resp.text()
    stored = (await resp.json())["answer_key"]
    assert stored["source_type"] == "custom" and stored["marking_schemes"] == EVALUATION["marking_schemes"]
    assert dict(zip(stored["options"]["questions_in_order"], stored["options"]["answers_in_order"])) == KEY

    sheets = list(FORM.sheets(3, 21))
    batch_id = await upload(api, zipped(sheets), upload_type="zip_no_qr", task_id=TASK)
    await process(api, batch_id, [worker(api)])
    results = {s["source"]: s for s in (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]}
    for sheet in sheets:
        got = results[f"scans/{sheet.student_id}.jpg"]
        assert got["status"] == "ok", got["error"]
        assert got["score"] == sum(sheet.truth[q] == KEY[q] for q in QUESTIONS)


async def test_a_new_key_image_replaces_the_key(api):
    assert (await register(api, key_sheet(KEY))).status == 201
    changed = {**KEY, "q1": "D" if KEY["q1"] != "D" else "A"}
    data = form(
        task_id=None,
        template=FORM.raw,
        config=None,
        evaluation=EVALUATION,
        assets=[("answer_key.jpg", jpeg(key_sheet(changed, seed=5)))],
    )
    resp = await api.client.put(f"/api/tasks/{TASK}", data=data, headers=api.auth("root"))
    assert resp.status == 200, await resp.text()
    options = (await resp.json())["answer_key"]["options"]
    assert dict(zip(options["questions_in_order"], options["answers_in_order"])) == changed


async def test_key_image_that_does_not_read_confidently_is_refused(api):
    resp = await register(api, key_sheet({**KEY, "q5": "", "q9": "AC"}))
    assert resp.status == 400
    detail = (await resp.json())["detail"]
    assert "answer_key_image_path" in detail and "q5 blank" in detail and "q9 multiple ('AC')" in detail
    assert "q6" not in detail


async def test_key_image_must_be_sent(api):
    data = form(template=FORM.raw, config=None, evaluation=EVALUATION, assets=[])
    resp = await api.client.post("/api/tasks", data=data, headers=api.auth("root"))
    assert resp.status == 400 and "'answer_key.jpg' was not sent" in (await resp.json())["detail"]


def test_without_questions_in_order_the_answered_questions_are_the_key():
    """OMRChecker's rule: every question answered on the key sheet, in sorted order."""
    half = {q: a for q, a in KEY.items() if int(q[1:]) <= 50}
    evaluation = {
        "source_type": "csv",
        "options": {"answer_key_csv_path": "absent.csv", "answer_key_image_path": "key.jpg"},
    }
    ids = {"Roll": "0123456789", "bookletNo": "C"}
    got = key_from_image(evaluation, FORM.template, key_sheet({**half, **ids}, seed=2), "key.jpg")
    expected = sorted([*half, *ids])
    assert got["options"] == {
        "answer_key_image_path": "key.jpg",
        "questions_in_order": expected,
        "answers_in_order": [{**half, **ids}[q] for q in expected],
    }


def test_the_csv_wins_when_it_is_sent():
    """As in OMRChecker: the image is read only when the CSV is not there."""
    assert key_image_name(EVALUATION, {"answer_key.csv": b"q1,A\n", "answer_key.jpg": b"x"}) is None
    assert key_image_name(EVALUATION, {"answer_key.jpg": b"x"}) == "answer_key.jpg"
    assert (
        key_image_name({"source_type": "custom", "options": {"answer_key_image_path": "k.jpg"}}, {}) is None
    )
