"""GET /api/tasks/{task_id}/statistics and .../statistics.csv (admins): item analysis over
every `ok` and `needs_review` sheet of the task, corrections applied (omr.statistics).

The task's sheets are read a chunk at a time and added to running sums in a thread, so a task
of any size takes bounded memory and the event loop only waits on the database; a few analyses
run at once, the others queue."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from .. import errors
from ..batches.tasks import load_task
from ..db.scores import Scores
from ..http.files import content_disposition
from ..http.keys import REPO, principal
from .results import csv_line

CHUNK = 500  # sheets whose answers are in memory at once
AT_ONCE = 2  # analyses running at once (each holds a database connection while it streams)
SLOTS = web.AppKey("statistics_slots", asyncio.Semaphore)
FIXED = ["question", "difficulty", "discrimination"]


async def analysis(request: web.Request) -> dict:
    """{"task_id", "sheets", "kr20", "questions": [...]}; 404 for non-admins (to them no task
    exists, as with GET /api/tasks/{task_id}), 409 for a task without an answer key."""
    from ..omr.errors import TemplateError
    from ..omr.scoring import EvaluationError
    from ..omr.statistics import ItemAnalysis

    task_id = request.match_info["task_id"]
    if not principal(request).is_admin:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    repo = request.app[REPO]
    try:
        spec = await load_task(repo, task_id)
    except (TemplateError, EvaluationError) as exc:
        raise errors.CONFLICT(
            f"Task {task_id}: its stored template or answer key no longer parses: {exc}"
        ) from None
    if spec is None:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    if spec.key is None:
        raise errors.CONFLICT(
            f"Task {task_id} has no answer key; item analysis needs one (PUT /api/tasks/{task_id})"
        )
    template = spec.template
    fields = template.field_map()
    items = ItemAnalysis(
        spec.key,
        template.empty_value,
        labels={column.lower(): column for column in template.columns},
        values={c: tuple(b.value for b in fields[c].bubbles) for c in template.columns if c in fields},
    )
    async with request.app[SLOTS]:
        chunks = Scores(repo.engine).scored_sheets(task_id, CHUNK)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                await asyncio.to_thread(_add, items, chunk)
    return {"task_id": task_id, **items.result()}


def _add(items, chunk: list[dict[str, str]]) -> None:
    for marked in chunk:
        items.add(marked)


async def statistics(request: web.Request) -> web.Response:
    return web.json_response(await analysis(request))


async def statistics_csv(request: web.Request) -> web.Response:
    """One row per question: difficulty, discrimination, the count of each choice (a column
    per value any question offers or got), blanks, and the test's sheets and KR-20."""
    result = await analysis(request)
    questions = result["questions"]
    choices = list(dict.fromkeys(v for q in questions for v in q["choices"] if v != ""))
    lines = [csv_line([*FIXED, *choices, "blank", "sheets", "kr20"])]
    for q in questions:
        counts = [q["choices"].get(v, 0) for v in (*choices, "")]
        lines.append(csv_line([q[c] for c in FIXED] + counts + [result["sheets"], result["kr20"]]))
    return web.Response(
        body=b"".join(lines),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": content_disposition(
                f"{result['task_id']}-statistics.csv", "statistics.csv"
            ),
        },
    )


async def _slots(app: web.Application):
    app[SLOTS] = asyncio.Semaphore(AT_ONCE)
    yield


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_slots)
    app.router.add_get("/api/tasks/{task_id}/statistics", statistics)
    app.router.add_get("/api/tasks/{task_id}/statistics.csv", statistics_csv)
