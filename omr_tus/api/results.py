"""A batch's results: GET /api/batches/{id}/results (JSON) and .../results.csv (streamed)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from aiohttp import web

from ..http.files import content_disposition
from ..http.keys import REPO
from . import params
from .batches import visible_batch

SHEET_STATUSES = ("pending", "ok", "needs_review", "failed")
CSV_PAGE = 500
FIXED_COLUMNS = ["source", "page", "task_id", "student_id", "status", "score"]


async def _sheets_with_answers(request: web.Request, batch_id: str, status: str | None, limit: int | None,
                               offset: int) -> list[dict]:
    repo = request.app[REPO]
    sheets = await repo.sheets_of(batch_id, status, limit, offset)
    by_sheet: dict[int, list] = defaultdict(list)
    for answer in await repo.answers_of([s.id for s in sheets]):
        by_sheet[answer.sheet_id].append(answer)
    return [{
        "source": s.source if s.page == 1 else f"{s.source}#p{s.page}", "page": s.page, "task_id": s.task_id, "student_id": s.student_id,
        "status": s.status, "score": s.score,
        "answers": {a.column: a.value for a in by_sheet[s.id]},
        "flags": {a.column: a.flags.split(",") if a.flags else [] for a in by_sheet[s.id]},
        "confidence": {a.column: round(a.confidence, 4) for a in by_sheet[s.id]},
        "error": s.error,
    } for s in sheets]


async def results(request: web.Request) -> web.Response:
    batch = await visible_batch(request)
    q = request.query
    status = params.choice(q, "status", SHEET_STATUSES)
    limit = params.integer(q, "limit", 0, 0, 10_000) or None
    offset = params.integer(q, "offset", 0, 0, 10**9)
    return web.json_response({"batch_id": batch.id,
                              "sheets": await _sheets_with_answers(request, batch.id, status, limit, offset)})


async def results_csv(request: web.Request) -> web.StreamResponse:
    """One row per sheet, written page by page: a batch of any size in bounded memory. The
    answer columns are every column of the batch's sheets, in template order."""
    batch = await visible_batch(request)
    status = params.choice(request.query, "status", SHEET_STATUSES)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": content_disposition(f"{batch.filename or batch.id}-results.csv", "results.csv")})
    await response.prepare(request)
    columns = await request.app[REPO].answer_columns(batch.id)
    await response.write(_csv_line(FIXED_COLUMNS + columns))
    offset = 0
    while True:
        page = await _sheets_with_answers(request, batch.id, status, CSV_PAGE, offset)
        for sheet in page:
            await response.write(_csv_line([sheet[c] for c in FIXED_COLUMNS] +
                                           [sheet["answers"].get(c, "") for c in columns]))
        if len(page) < CSV_PAGE:
            break
        offset += CSV_PAGE
    await response.write_eof()
    return response


def _csv_line(values: list) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_MINIMAL).writerow(["" if v is None else v for v in values])
    return out.getvalue().encode()


def setup(app: web.Application) -> None:
    app.router.add_get("/api/batches/{batch_id}/results", results)
    app.router.add_get("/api/batches/{batch_id}/results.csv", results_csv)
