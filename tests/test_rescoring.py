"""Rescoring: a changed answer key (PUT /api/tasks/{task_id}) scores the task's sheets again
from their stored answers, corrections kept, a bounded chunk at a time in the workers, with
progress on GET /api/tasks/{task_id}. Until a sheet is rescored it shows no score but
`rescoring`: never a score from the old key as if it were the new one, even when a worker stops
half-way, a correction lands in the middle or a worker still holds the old key in its cache."""

from __future__ import annotations

import asyncio

import numpy as np
from sqlalchemy import insert, select

from omr_tus.batches.rescore import Rescorer
from omr_tus.db.models import Answer, Sheet
from omr_tus.db.scores import Scores
from omr_tus.http.keys import ENGINE, REPO
from omr_tus.omr.template import Template

from .test_omr_pipeline import TASK, TEMPLATE, process, register_task, upload, worker, zipped
from .test_statistics import (
    ACCEPTED,
    EVALUATION,
    QUESTIONS,
    _png,
    known_answers,
    known_batch,
    sheet_page,
    zip_of,
)

NEW_LETTERS = {q: "BCDA"[i % 4] for i, q in enumerate(QUESTIONS)}
# every question worth 3, a wrong answer costs 1; q1 weighted: B earns 3, C earns 1
NEW_KEY = {
    "options": {
        "questions_in_order": ["q1..60"],
        "answers_in_order": [[["B", 3], ["C", 1]]] + [NEW_LETTERS[q] for q in QUESTIONS[1:]],
    },
    "marking_schemes": {"DEFAULT": {"correct": "3", "incorrect": "-1", "unmarked": "0"}},
}


def old_score(answers: dict[str, str]) -> float:
    """EVALUATION by hand: 1 a question right, q51..60 2 right and -1 wrong, blanks 0."""
    total = 0
    for i, q in enumerate(QUESTIONS, 1):
        value = answers[q]
        if value:
            total += (2 if value in ACCEPTED[q] else -1) if i > 50 else int(value in ACCEPTED[q])
    return total


def new_score(answers: dict[str, str]) -> float:
    """NEW_KEY by hand."""
    total = 0
    for q in QUESTIONS:
        value = answers[q]
        if value and q == "q1":
            total += {"B": 3, "C": 1}.get(value, -1)
        elif value:
            total += 3 if value == NEW_LETTERS[q] else -1
    return total


async def put_key(api, key: dict, name: str = "Physics") -> None:
    resp = await api.client.put(
        f"/api/tasks/{TASK}",
        json={"name": name, "template": TEMPLATE, "answer_key": key},
        headers=api.auth("root"),
    )
    assert resp.status == 200, await resp.text()


async def rescoring(api) -> dict:
    return (await api.get_json(f"/api/tasks/{TASK}", user="root"))["rescoring"]


async def scores_by_student(api, batch_id: str) -> dict[str, dict]:
    sheets = (await api.get_json(f"/api/batches/{batch_id}/results"))["sheets"]
    return {s["student_id"]: s for s in sheets if s["status"] != "failed"}


async def test_a_new_key_rescores_as_a_hand_computation_says_and_keeps_corrections(api):
    batch_id, known = await known_batch(api)
    before = await scores_by_student(api, batch_id)
    assert {s: before[s]["score"] for s in known} == {s: old_score(a) for s, a in known.items()}
    assert await rescoring(api) == {"active": False, "key_version": 0, "sheets_done": 9, "sheets_total": 9}

    await put_key(api, NEW_KEY)
    assert await rescoring(api) == {"active": True, "key_version": 1, "sheets_done": 0, "sheets_total": 9}
    during = await scores_by_student(api, batch_id)
    assert all(s["score"] is None and s["rescoring"] for s in during.values())  # no old score shown
    resp = await api.client.get(f"/api/batches/{batch_id}/results.csv", headers=api.auth())
    assert all(line.split(",")[5] == "" for line in (await resp.text()).splitlines()[1:])

    rescorer = Rescorer(api.client.app[REPO], "r1", lease=60, chunk=4)
    done = []
    while count := await rescorer.run_once():
        done.append(count)
        progress = await rescoring(api)
        assert progress["sheets_done"] == sum(done) and progress["sheets_total"] == 9
    assert done == [4, 4, 1]  # bounded chunks
    assert (await rescoring(api))["active"] is False

    after = await scores_by_student(api, batch_id)
    assert {s: after[s]["score"] for s in known} == {s: new_score(a) for s, a in known.items()}
    assert not any(s["rescoring"] for s in after.values())
    reviewed = after["20259999"]  # its correction is kept, and counts in its new score
    assert reviewed["answers"]["q7"] == "C" and reviewed["corrections"]["q7"]["original"] == "A"


async def test_only_a_change_rescores_and_a_worker_with_the_old_key_cached_is_caught(api):
    """A worker caches a task's key for a while: sheets it reads after the key changed are
    scored with the old key, so they are rescored too."""
    w = worker(api)
    first, known = await known_batch(api, workers=[w])  # w has the old key cached now
    await put_key(api, EVALUATION)
    await put_key(api, EVALUATION, name="Physics, renamed")
    assert (await rescoring(api))["key_version"] == 0  # nothing that scores depend on changed

    await put_key(api, NEW_KEY)
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(77)
    late = {f"3025{i:04d}": known_answers(rng, 0.7) for i in range(2)}
    files = {f"{s}.png": _png(sheet_page(template, s, a)) for s, a in late.items()}
    second = await upload(api, zip_of(files), upload_type="zip_with_qr")
    assert (await process(api, second, [w]))["status"] == "completed"
    for _ in range(20):  # the worker rescores in its rounds, as it reads
        if not (await rescoring(api))["active"]:
            break
        await w.run_once()
    assert await rescoring(api) == {"active": False, "key_version": 1, "sheets_done": 11, "sheets_total": 11}
    for batch_id, answers in ((first, known), (second, late)):
        got = await scores_by_student(api, batch_id)
        assert {s: got[s]["score"] for s in answers} == {s: new_score(a) for s, a in answers.items()}


async def test_a_worker_that_stops_mid_rescore_and_a_correction_meanwhile(api):
    """A worker claims every sheet and stops: they stay `rescoring` (no score) until its lease
    runs out and another worker scores them. A correction in the meantime takes its sheet
    from the stopped worker, so the stopped worker's late write cannot undo it."""
    batch_id, known = await known_batch(api)
    await put_key(api, NEW_KEY)
    scores = Scores(api.client.app[ENGINE])
    task_id, claimed = await scores.claim_rescoring("stopped", 100, lease=0.5)
    assert task_id == TASK and len(claimed) == 9
    other = Rescorer(api.client.app[REPO], "other", lease=60, chunk=4)
    assert await other.run_once() == 0  # all leased
    assert (await rescoring(api))["sheets_done"] == 0

    sheet = (await scores_by_student(api, batch_id))["20250003"]
    value = NEW_LETTERS["q5"] if known["20250003"]["q5"] != NEW_LETTERS["q5"] else ""
    resp = await api.client.put(
        f"/api/sheets/{sheet['sheet_id']}/answers/q5", json={"value": value}, headers=api.auth("root")
    )
    corrected = await resp.json()
    known["20250003"]["q5"] = value
    assert corrected["score"] == new_score(known["20250003"]) and corrected["rescoring"] is False
    assert (await rescoring(api))["sheets_done"] == 1

    await asyncio.sleep(0.6)  # the stopped worker's lease runs out
    assert await other.run_once() == 4 and await other.run_once() == 4 and await other.run_once() == 0
    await scores.save_scores("stopped", [(i, -999.0, 1) for i in claimed])  # far too late
    assert await rescoring(api) == {"active": False, "key_version": 1, "sheets_done": 9, "sheets_total": 9}
    got = await scores_by_student(api, batch_id)
    assert {s: got[s]["score"] for s in known} == {s: new_score(a) for s, a in known.items()}


async def test_a_large_task_is_rescored_in_bounded_chunks(api):
    """1,234 sheets of 20 questions: the rescorer never holds more than its chunk of them."""
    key = {"options": {"questions_in_order": ["q1..20"], "answers_in_order": ["A"] * 20}}
    await register_task(api, answer_key=key)
    batch_id = await upload(api, zipped([]), upload_type="zip_with_qr")
    rng = np.random.default_rng(3)
    count = 1234
    marks = rng.choice(["A", "B", ""], size=(count, 20))
    engine = api.client.app[ENGINE]
    sheets, answers = Sheet.__table__, Answer.__table__
    async with engine.begin() as conn:
        await conn.execute(
            insert(sheets),
            [
                dict(
                    batch_id=batch_id,
                    source=f"s{i:05d}.png",
                    page=1,
                    status="ok",
                    task_id=TASK,
                    score=0,
                    attempts=1,
                )
                for i in range(count)
            ],
        )
        ids = (await conn.execute(select(sheets.c.id).order_by(sheets.c.source))).scalars().all()
        await conn.execute(
            insert(answers),
            [
                dict(
                    sheet_id=sheet_id, column=f"q{j + 1}", value=str(marks[i, j]), confidence=1.0, position=j
                )
                for i, sheet_id in enumerate(ids)
                for j in range(20)
            ],
        )
    await put_key(api, {"options": {"questions_in_order": ["q1..20"], "answers_in_order": ["B"] * 20}})
    rescorer = Rescorer(api.client.app[REPO], "r", lease=60)  # the default chunk: 500 sheets
    assert [await rescorer.run_once() for _ in range(4)] == [500, 500, 234, 0]
    assert await rescoring(api) == {
        "active": False,
        "key_version": 1,
        "sheets_done": count,
        "sheets_total": count,
    }
    async with engine.connect() as conn:
        got = dict((await conn.execute(select(sheets.c.id, sheets.c.score))).all())
    assert [got[i] for i in ids] == [float((row == "B").sum()) for row in marks]
