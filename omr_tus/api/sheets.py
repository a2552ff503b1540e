"""One sheet: GET /api/sheets/{id} (its answers), .../review.png (the page with every bubble
drawn as read) and, for admins, PUT .../answers/{column} (a correction, kept when the batch is
read again)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy import Row

from .. import errors
from ..batches.ingest import Limits, PageError, load_page
from ..batches.tasks import load_task
from ..http.json_body import json_body
from ..http.keys import FILES, REPO, REVIEW_POOL, principal
from ..http.pools import BoundedPool
from .results import sheet_entries

VALUE_LIMIT = 64
SHEET_IDS = 2**31  # sheets.id is a 32-bit integer on PostgreSQL: a larger id is no sheet (404)
# Review pictures drawn at once: each holds one decoded page (at most Limits.max_decoded_bytes and
# its grey copy), so memory is bounded whatever the machine: a fixed, small number, not one per CPU.
# More than REVIEW_WAITING queued gets 503.
REVIEW_THREADS = 2
REVIEW_WAITING = 8
REVIEW_LIMITS = Limits()  # a page that cannot be drawn within them answers 404 with the reason


async def _visible_sheet(request: web.Request) -> tuple[Row, Row]:
    """(sheet, batch), for the batch's owner or an admin; 404 for anyone else."""
    raw = request.match_info["sheet_id"]
    repo = request.app[REPO]
    known = raw.isascii() and raw.isdigit() and len(raw) < 12 and int(raw) < SHEET_IDS
    sheet = await repo.sheet(int(raw)) if known else None
    batch = await repo.batch(sheet.batch_id) if sheet is not None else None
    user = principal(request)
    if sheet is None or batch is None or (batch.owner_id != user.id and not user.is_admin):
        raise errors.NOT_FOUND(f"Sheet {raw} not found")
    return sheet, batch


async def get_sheet(request: web.Request) -> web.Response:
    sheet, _ = await _visible_sheet(request)
    return web.json_response((await sheet_entries(request, [sheet]))[0])


async def review_image(request: web.Request) -> web.Response:
    """The page read again and drawn, in the review pool (a few threads of its own): nothing
    of it is stored."""
    sheet, batch = await _visible_sheet(request)
    if batch.file_deleted_at is not None:
        raise errors.UPLOAD_GONE(
            f"Sheet {sheet.id}'s page is gone: retention deleted its batch's file on "
            f"{batch.file_deleted_at.isoformat()}; its answers are kept"
        )
    task_id = sheet.task_id or batch.task_id
    spec = await load_task(request.app[REPO], task_id) if task_id else None
    if spec is None:
        raise errors.NOT_FOUND(f"Sheet {sheet.id} has no task template to draw it with")
    path = await request.app[FILES].local_path(batch.upload_id)
    corrected = {c.column for c in await request.app[REPO].corrections_of([sheet.id])}
    png = await request.app[REVIEW_POOL].run(_draw, path, sheet, spec.template, corrected)
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-cache"})


def _draw(path: Path, sheet: Row, template, corrected: set[str]) -> bytes:
    """Decoded at most twice the template's width (see ingest), so memory stays bounded."""
    from ..omr.reader import read_sheet
    from ..omr.review import review_png

    try:
        image = load_page(path, sheet.source, sheet.page, template.page[0], REVIEW_LIMITS)
    except PageError as exc:
        raise errors.NOT_FOUND(f"Sheet {sheet.id}'s page cannot be read: {exc}") from None
    result = read_sheet(image, template)
    if result.aligned is None:
        raise errors.NOT_FOUND(f"Sheet {sheet.id} could not be aligned: {result.error}")
    return review_png(result.aligned, template, corrected)


async def correct_answer(request: web.Request) -> web.Response:
    user = principal(request)
    if not user.is_admin:
        raise errors.FORBIDDEN("Only an admin can correct an answer")
    sheet, batch = await _visible_sheet(request)
    column = request.match_info["column"]
    repo = request.app[REPO]
    answers = {a.column: a.value for a in await repo.answers_of([sheet.id])}
    if column not in answers:
        raise errors.NOT_FOUND(
            f"Sheet {sheet.id} has no column {column!r}; its columns: {', '.join(answers)}"
        )
    try:
        body = await json_body(request)
    except ValueError:
        body = None
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str) or len(value) > VALUE_LIMIT or "\x00" in value:
        raise errors.BAD_REQUEST(
            f'Send JSON {{"value": "B"}}: the answer as the results write it ("" for '
            f"blank), at most {VALUE_LIMIT} characters"
        )
    fixes = {c.column: c.value for c in await repo.corrections_of([sheet.id])}
    spec = await load_task(repo, sheet.task_id) if sheet.task_id else None
    score = spec.score({**answers, **fixes, column: value}) if spec is not None else sheet.score
    await repo.save_correction(sheet.id, column, value, user.id, score, spec.version if spec else None)
    corrected, _ = await _visible_sheet(request)
    return web.json_response((await sheet_entries(request, [corrected]))[0])


async def _review_pool(app: web.Application):
    app[REVIEW_POOL] = pool = BoundedPool("review", REVIEW_THREADS, REVIEW_WAITING)
    yield
    pool.shutdown()


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_review_pool)
    app.router.add_get("/api/sheets/{sheet_id}", get_sheet)
    app.router.add_get("/api/sheets/{sheet_id}/review.png", review_image)
    app.router.add_put("/api/sheets/{sheet_id}/answers/{column}", correct_answer)
