"""A batch's results: GET /api/batches/{id}/results (JSON) and .../results.csv (streamed)."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy import Row

from ..http.files import content_disposition
from ..http.keys import REPO
from . import params
from .batches import iso, visible_batch

SHEET_STATUSES = ("pending", "ok", "needs_review", "failed")
CSV_PAGE = 500
FIXED_COLUMNS = ["source", "page", "task_id", "student_id", "status", "score"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


async def sheet_entries(request: web.Request, rows: Sequence[Row]) -> list[dict]:
    """Sheets as the API shows them: an admin's correction replaces the value read (the value
    read stays under `corrections`)."""
    repo = request.app[REPO]
    ids = [s.id for s in rows]
    by_sheet: dict[int, list] = defaultdict(list)
    for answer in await repo.answers_of(ids):
        by_sheet[answer.sheet_id].append(answer)
    fixes: dict[int, dict[str, Row]] = defaultdict(dict)
    for fix in await repo.corrections_of(ids):
        fixes[fix.sheet_id][fix.column] = fix
    entries = []
    for s in rows:
        answers = {a.column: a.value for a in by_sheet[s.id]}
        entries.append(
            {
                "sheet_id": s.id,
                "batch_id": s.batch_id,
                "source": s.source if s.page == 1 else f"{s.source}#p{s.page}",
                "page": s.page,
                "task_id": s.task_id,
                "student_id": s.student_id,
                "status": s.status,
                # a score from an older answer key is no score: null until rescored
                "score": None if s.rescoring else s.score,
                "rescoring": bool(s.rescoring),
                "answers": {**answers, **{c: f.value for c, f in fixes[s.id].items()}},
                "flags": {a.column: a.flags.split(",") if a.flags else [] for a in by_sheet[s.id]},
                "confidence": {a.column: round(a.confidence, 4) for a in by_sheet[s.id]},
                "corrections": {
                    c: {
                        "value": f.value,
                        "original": answers.get(c),
                        "by": f.username,
                        "at": iso(f.corrected_at),
                    }
                    for c, f in fixes[s.id].items()
                },
                "error": s.error,
            }
        )
    return entries


async def _sheets_with_answers(
    request: web.Request, batch_id: str, status: str | None, limit: int | None, offset: int
) -> list[dict]:
    return await sheet_entries(request, await request.app[REPO].sheets_of(batch_id, status, limit, offset))


async def results(request: web.Request) -> web.Response:
    batch = await visible_batch(request)
    q = request.query
    status = params.choice(q, "status", SHEET_STATUSES)
    limit = params.integer(q, "limit", 0, 0, 10_000) or None
    offset = params.integer(q, "offset", 0, 0, 10**9)
    return web.json_response(
        {"batch_id": batch.id, "sheets": await _sheets_with_answers(request, batch.id, status, limit, offset)}
    )


async def results_csv(request: web.Request) -> web.StreamResponse:
    """One row per sheet, written page by page: a batch of any size in bounded memory. The
    answer columns are every column of the batch's sheets, in template order."""
    batch = await visible_batch(request)
    status = params.choice(request.query, "status", SHEET_STATUSES)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": content_disposition(
                f"{batch.filename or batch.id}-results.csv", "results.csv"
            ),
        }
    )
    await response.prepare(request)
    columns = await request.app[REPO].answer_columns(batch.id)
    await response.write(csv_line(FIXED_COLUMNS + columns))
    offset = 0
    while True:
        page = await _sheets_with_answers(request, batch.id, status, CSV_PAGE, offset)
        for sheet in page:
            await response.write(
                csv_line([sheet[c] for c in FIXED_COLUMNS] + [sheet["answers"].get(c, "") for c in columns])
            )
        if len(page) < CSV_PAGE:
            break
        offset += CSV_PAGE
    await response.write_eof()
    return response


def csv_line(values: list) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_MINIMAL).writerow(
        ["" if v is None else spreadsheet_safe(v) for v in values]
    )
    return out.getvalue().encode()


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (it starts with = + - @, a tab, CR or
    NUL: OWASP ASVS 1.2.10) gets a leading ' that spreadsheets show as "text"; a plain
    number such as -1.5 or +3 is no formula and stays as it is, so scores and signed answers
    still read as numbers. Those who read the CSV with a program strip one leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def setup(app: web.Application) -> None:
    app.router.add_get("/api/batches/{batch_id}/results", results)
    app.router.add_get("/api/batches/{batch_id}/results.csv", results_csv)
