"""Item analysis: GET /api/tasks/{task_id}/statistics and .../statistics.csv.

The truth test renders sheets whose answers the test chooses, zips them with a sheet that
needs review (a tick) and one that fails (a white page), uploads them over tus and lets the real
worker read them; after an admin's correction the endpoint must equal the test's own
computation from the known answers (numpy's correlation and variance, not the product's sums).
The maths is also checked alone against numpy on random answers, and at its edges."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter

import cv2
import numpy as np
import pytest
from sqlalchemy import update

from omr_tus.db.models import Sheet
from omr_tus.http.keys import ENGINE
from omr_tus.omr.render import render_sheet
from omr_tus.omr.scoring import AnswerKey
from omr_tus.omr.statistics import ItemAnalysis
from omr_tus.omr.template import Template

from .test_omr_pipeline import TASK, TEMPLATE, process, register_task, upload, worker

QUESTIONS = [f"q{i}" for i in range(1, 61)]
LETTERS = "ABCD"
# q1 accepts A or B; q51..60 are worth 2 (a wrong answer costs 1): right still means full marks
ACCEPTED = {q: {LETTERS[i % 4]} for i, q in enumerate(QUESTIONS)} | {"q1": {"A", "B"}}
EVALUATION = {
    "options": {
        "questions_in_order": ["q1..60"],
        "answers_in_order": [["A", "B"]] + [LETTERS[i % 4] for i in range(1, 60)],
    },
    "marking_schemes": {
        "DEFAULT": {"correct": "1", "incorrect": "0", "unmarked": "0"},
        "HARD": {"questions": ["q51..60"], "marking": {"correct": "2", "incorrect": "-1", "unmarked": "0"}},
    },
}
ABILITIES = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
REVIEWED = "q7"  # the review sheet's doubtful question: marked A, a tick on C, corrected to C


def known_answers(rng: np.random.Generator, ability: float) -> dict[str, str]:
    """A student's marks: right with chance `ability`, else a wrong letter, a blank or two
    marks; q2 right for everyone (no variance: its discrimination is null)."""
    answers = {}
    for q in QUESTIONS:
        right = sorted(ACCEPTED[q])[0]
        roll = rng.random()
        if q == "q2" or roll < ability:
            answers[q] = right
        else:
            wrong = [c for c in LETTERS if c not in ACCEPTED[q]]
            kind = rng.integers(0, 4)
            if kind == 0:
                answers[q] = ""
            elif kind == 1:
                answers[q] = "".join(sorted(rng.choice(wrong, 2, replace=False)))
            else:
                answers[q] = str(rng.choice(wrong))
    return answers


def _png(page: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", page)
    assert ok
    return data.tobytes()


def sheet_page(template: Template, student: str, answers: dict[str, str]) -> np.ndarray:
    """A sheet of TASK with its QR code and the student id bubbled as the QR says."""
    return render_sheet(template, TASK, student, {**answers, "student_id": student})


def zip_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out.getvalue()


def _tick(page: np.ndarray, template: Template, question: str, value: str) -> None:
    """A tick through a bubble: neither blank nor a fill, so the reader flags it ambiguous."""
    b = next(b for b in template.field_map()[question].bubbles if b.value == value)
    cv2.line(page, (b.x + 6, b.y + b.h // 2), (b.x + b.w // 2, b.y + b.h - 6), 0, 4)
    cv2.line(page, (b.x + b.w // 2, b.y + b.h - 6), (b.x + b.w - 4, b.y + 4), 0, 4)


async def known_batch(api, seed: int = 2026, workers=None) -> tuple[str, dict[str, dict[str, str]]]:
    """The task registered with EVALUATION, a batch of sheets with known answers (plus one
    corrected after review and one failed) read by `workers` (one new worker by default), and
    {student_id: answers as corrected}."""
    await register_task(api, answer_key=EVALUATION)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(seed)
    known, files = {}, {}
    for i, ability in enumerate(ABILITIES):
        student = f"2025{i:04d}"
        known[student] = known_answers(rng, ability)
        files[f"scans/{student}.png"] = _png(sheet_page(template, student, known[student]))
    reviewed = "20259999"
    known[reviewed] = {**known_answers(rng, 0.6), REVIEWED: "A"}
    page = sheet_page(template, reviewed, known[reviewed])
    _tick(page, template, REVIEWED, "C")
    files[f"scans/{reviewed}.png"] = _png(page)
    files["scans/white.png"] = _png(np.full((2339, 1654), 255, np.uint8))
    batch_id = await upload(api, zip_of(files), upload_type="zip_with_qr")
    assert (await process(api, batch_id, workers or [worker(api)]))["status"] == "completed"

    sheets = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    by_status = Counter(s["status"] for s in sheets)
    assert by_status == {"ok": len(ABILITIES), "needs_review": 1, "failed": 1}, by_status
    for sheet in sheets:
        if sheet["status"] == "ok":  # the reader read what was drawn
            assert {q: sheet["answers"][q] for q in QUESTIONS} == known[sheet["student_id"]]
    review = next(s for s in sheets if s["status"] == "needs_review")
    assert review["student_id"] == reviewed and "ambiguous" in review["flags"][REVIEWED]
    resp = await api.client.put(
        f"/api/sheets/{review['sheet_id']}/answers/{REVIEWED}", json={"value": "C"}, headers=api.auth("root")
    )
    assert resp.status == 200, await resp.text()
    known[reviewed][REVIEWED] = "C"
    return batch_id, known


def hand_statistics(sheets: list[dict[str, str]]) -> dict:
    """The test's own computation: a right/wrong matrix, numpy's Pearson correlation with the
    rest score and numpy's (population) variance."""
    x = np.array([[int(s[q] in ACCEPTED[q]) for q in QUESTIONS] for s in sheets], dtype=float)
    totals = x.sum(axis=1)
    p = x.mean(axis=0)
    k = len(QUESTIONS)
    questions = []
    for j, q in enumerate(QUESTIONS):
        rest = totals - x[:, j]
        r = None if x[:, j].std() == 0 or rest.std() == 0 else float(np.corrcoef(x[:, j], rest)[0, 1])
        counts = Counter(s[q] for s in sheets)
        choices = {c: counts.get(c, 0) for c in LETTERS}
        choices |= {v: n for v, n in sorted(counts.items()) if v not in tuple(LETTERS) and v != ""}
        choices[""] = counts.get("", 0)
        questions.append({"question": q, "difficulty": float(p[j]), "discrimination": r, "choices": choices})
    kr20 = k / (k - 1) * (1 - float((p * (1 - p)).sum()) / float(totals.var()))
    return {"task_id": TASK, "sheets": len(sheets), "kr20": kr20, "questions": questions}


def assert_same(got: dict, expected: dict) -> None:
    assert (got["task_id"], got["sheets"]) == (expected["task_id"], expected["sheets"])
    assert got["kr20"] == pytest.approx(expected["kr20"], abs=1e-9)
    assert [q["question"] for q in got["questions"]] == QUESTIONS  # the key's order
    for mine, theirs in zip(got["questions"], expected["questions"]):
        assert mine["difficulty"] == pytest.approx(theirs["difficulty"], abs=1e-12), mine["question"]
        if theirs["discrimination"] is None:
            assert mine["discrimination"] is None, mine["question"]
        else:
            assert mine["discrimination"] == pytest.approx(theirs["discrimination"], abs=1e-9), mine[
                "question"
            ]
        assert mine["choices"] == theirs["choices"], mine["question"]
        assert list(mine["choices"]) == list(theirs["choices"]), mine["question"]  # A-D, others, blank


async def test_statistics_equal_a_hand_computation_on_a_rendered_batch(api):
    _, known = await known_batch(api)
    got = await api.get_json(f"/api/tasks/{TASK}/statistics", user="root")
    assert_same(got, hand_statistics(list(known.values())))  # failed sheet left out, correction in
    assert got["questions"][1]["discrimination"] is None  # q2: everyone right
    assert any(q["choices"].get("", 0) for q in got["questions"])  # blanks counted

    resp = await api.client.get(f"/api/tasks/{TASK}/statistics.csv", headers=api.auth("root"))
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert "statistics.csv" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["question"] for r in rows] == QUESTIONS
    for row, q in zip(rows, got["questions"]):
        assert float(row["difficulty"]) == pytest.approx(q["difficulty"])
        if q["discrimination"] is None:
            assert row["discrimination"] == ""
        else:
            assert float(row["discrimination"]) == pytest.approx(q["discrimination"])
        assert int(row["blank"]) == q["choices"][""]
        assert all(int(row[v]) == n for v, n in q["choices"].items() if v)
        assert int(row["sheets"]) == got["sheets"] and float(row["kr20"]) == pytest.approx(got["kr20"])


async def test_a_failed_sheet_that_keeps_its_task_is_left_out(api):
    """A sheet read again that fails keeps the task id of its earlier reading: still left out."""
    batch_id, known = await known_batch(api)
    sheets = (await api.get_json(f"/api/batches/{batch_id}/results?status=ok"))["sheets"]
    gone = sheets[0]
    async with api.client.app[ENGINE].begin() as conn:
        await conn.execute(
            update(Sheet.__table__).where(Sheet.__table__.c.id == gone["sheet_id"]).values(status="failed")
        )
    got = await api.get_json(f"/api/tasks/{TASK}/statistics", user="root")
    assert_same(got, hand_statistics([a for s, a in known.items() if s != gone["student_id"]]))

    # a value a spreadsheet would run as a formula is escaped in the CSV as in the results' CSV
    formula = "=HYPERLINK(1)"
    resp = await api.client.put(
        f"/api/sheets/{sheets[1]['sheet_id']}/answers/q3", json={"value": formula}, headers=api.auth("root")
    )
    assert resp.status == 200
    assert (await api.get_json(f"/api/tasks/{TASK}/statistics", user="root"))["questions"][2]["choices"][
        formula
    ] == 1
    resp = await api.client.get(f"/api/tasks/{TASK}/statistics.csv", headers=api.auth("root"))
    header, *rows = list(csv.reader(io.StringIO(await resp.text())))
    assert "'" + formula in header and formula not in header
    assert rows[2][header.index("'" + formula)] == "1"


async def test_statistics_are_for_admins_and_need_a_key(api):
    await register_task(api, answer_key=None)
    for path in (f"/api/tasks/{TASK}/statistics", f"/api/tasks/{TASK}/statistics.csv"):
        await api.get_json(path, user="alice", status=404)  # to a non-admin no task exists
        detail = (await api.get_json(path, user="root", status=409))["detail"]
        assert "no answer key" in detail
        await api.get_json(path.replace(TASK, "99999999"), user="root", status=404)
    resp = await api.client.put(
        f"/api/tasks/{TASK}",
        json={"name": "Physics", "template": TEMPLATE, "answer_key": EVALUATION},
        headers=api.auth("root"),
    )
    assert resp.status == 200
    got = await api.get_json(f"/api/tasks/{TASK}/statistics", user="root")
    assert got["sheets"] == 0 and got["kr20"] is None
    assert all(q["difficulty"] is None and q["discrimination"] is None for q in got["questions"])
    assert got["questions"][0]["choices"] == {"A": 0, "B": 0, "C": 0, "D": 0, "": 0}


# -- the maths alone ------------------------------------------------------------------------


def _numpy_analysis(x: np.ndarray) -> tuple[list, list, float | None]:
    totals = x.sum(axis=1)
    p = x.mean(axis=0)
    disc = []
    for j in range(x.shape[1]):
        rest = totals - x[:, j]
        disc.append(None if x[:, j].std() == 0 or rest.std() == 0 else np.corrcoef(x[:, j], rest)[0, 1])
    k = x.shape[1]
    kr20 = None if k < 2 or totals.var() == 0 else k / (k - 1) * (1 - (p * (1 - p)).sum() / totals.var())
    return list(p), disc, kr20


def test_item_analysis_matches_numpy_on_random_answers():
    """Weighted answers too: right is only the answer with the highest weight."""
    rng = np.random.default_rng(5)
    k, n = 12, 400
    key = AnswerKey.parse(
        {
            "options": {
                "questions_in_order": [f"q1..{k}"],
                "answers_in_order": [[["A", 2], ["B", 1]]] + ["C"] * (k - 1),
            }
        }
    )
    ability = rng.uniform(0, 1, n)
    items = ItemAnalysis(key)
    x = np.zeros((n, k))
    for i in range(n):
        sheet = {}
        for j in range(k):
            right = rng.random() < ability[i]
            sheet[f"Q{j + 1}"] = (
                ("A" if right else "B") if j == 0 else ("C" if right else str(rng.choice(["A", "", "CD"])))
            )
            x[i, j] = right
        items.add(sheet)  # column names are matched without case, as scores are
    got = items.result()
    p, disc, kr20 = _numpy_analysis(x)
    assert got["sheets"] == n and got["kr20"] == pytest.approx(kr20, abs=1e-12)
    for j, q in enumerate(got["questions"]):
        assert q["question"] == f"q{j + 1}"
        assert q["difficulty"] == pytest.approx(p[j], abs=1e-12)
        assert q["discrimination"] == pytest.approx(disc[j], abs=1e-12)
        assert sum(q["choices"].values()) == n


def test_item_analysis_edges():
    one = AnswerKey.parse({"options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]}})
    items = ItemAnalysis(one)
    for value in "AB":
        items.add({"q1": value})
    assert items.result()["kr20"] is None  # one question: KR-20 is undefined
    assert items.result()["questions"][0]["discrimination"] is None  # no other question: rest is 0

    two = AnswerKey.parse(
        {
            "options": {"questions_in_order": ["q1", "q2"], "answers_in_order": ["A", "B"]},
            "marking_schemes": {
                "BONUS_q2": {"questions": ["q2"], "marking": {"correct": 1, "incorrect": 1, "unmarked": 1}}
            },
        }
    )
    items = ItemAnalysis(two, labels={"q1": "Q1"}, values={"Q1": ("A", "B")})
    items.add({"Q1": "A", "q2": ""})  # a bonus question is right whatever is marked, blank too
    items.add({"Q1": "A", "q2": "C"})
    got = items.result()
    assert got["kr20"] is None  # every total is 2: no variance
    assert [q["difficulty"] for q in got["questions"]] == [1.0, 1.0]
    assert got["questions"][0] == {
        "question": "Q1",
        "difficulty": 1.0,
        "discrimination": None,
        "choices": {"A": 2, "B": 0, "": 0},
    }
    assert got["questions"][1]["choices"] == {"C": 1, "": 1}
