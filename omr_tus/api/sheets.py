"""One sheet: GET /api/sheets/{id} (its answers), .../review.png (the page with every bubble
drawn as read) and, for admins, PUT .../answers/{column} (a correction, kept when the batch is
read again)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import Row

from .. import errors
from ..batches.ingest import PageError, load_page
from ..batches.tasks import load_task
from ..http.keys import FILES, REPO, principal
from .results import sheet_entries

VALUE_LIMIT = 64


async def _visible_sheet(request: web.Request) -> tuple[Row, Row]:
    """(sheet, batch), for the batch's owner or an admin; 404 for anyone else."""
    raw = request.match_info["sheet_id"]
    repo = request.app[REPO]
    sheet = await repo.sheet(int(raw)) if raw.isdigit() and len(raw) < 12 else None
    batch = await repo.batch(sheet.batch_id) if sheet is not None else None
    user = principal(request)
    if batch is None or (batch.owner_id != user.id and not user.is_admin):
        raise errors.NOT_FOUND(f"Sheet {raw} not found")
    return sheet, batch


async def get_sheet(request: web.Request) -> web.Response:
    sheet, _ = await _visible_sheet(request)
    return web.json_response((await sheet_entries(request, [sheet]))[0])


async def review_image(request: web.Request) -> web.Response:
    """Re-reads the page (in a thread) and draws it: nothing of it is stored."""
    from ..omr.reader import read_sheet
    from ..omr.review import review_png

    sheet, batch = await _visible_sheet(request)
    task_id = sheet.task_id or batch.task_id
    spec = await load_task(request.app[REPO], task_id) if task_id else None
    if spec is None:
        raise errors.NOT_FOUND(f"Sheet {sheet.id} has no task template to draw it with")
    path = await request.app[FILES].local_path(batch.upload_id)
    try:
        image = await asyncio.to_thread(load_page, path, sheet.source, sheet.page, spec.template.page[0])
    except PageError as exc:
        raise errors.NOT_FOUND(f"Sheet {sheet.id}'s page cannot be read: {exc}") from None
    result = await asyncio.to_thread(read_sheet, image, spec.template)
    if result.aligned is None:
        raise errors.NOT_FOUND(f"Sheet {sheet.id} could not be aligned: {result.error}")
    corrected = {c.column for c in await request.app[REPO].corrections_of([sheet.id])}
    png = await asyncio.to_thread(review_png, result.aligned, spec.template, corrected)
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-cache"})


async def correct_answer(request: web.Request) -> web.Response:
    user = principal(request)
    if not user.is_admin:
        raise errors.FORBIDDEN("Only an admin can correct an answer")
    sheet, batch = await _visible_sheet(request)
    column = request.match_info["column"]
    repo = request.app[REPO]
    answers = {a.column: a.value for a in await repo.answers_of([sheet.id])}
    if column not in answers:
        raise errors.NOT_FOUND(f"Sheet {sheet.id} has no column {column!r}; its columns: {', '.join(answers)}")
    try:
        body = await request.json()
    except ValueError:
        body = None
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str) or len(value) > VALUE_LIMIT or "\x00" in value:
        raise errors.BAD_REQUEST(f'Send JSON {{"value": "B"}}: the answer as the results write it ("" for '
                                 f"blank), at most {VALUE_LIMIT} characters")
    fixes = {c.column: c.value for c in await repo.corrections_of([sheet.id])}
    spec = await load_task(repo, sheet.task_id) if sheet.task_id else None
    score = spec.score({**answers, **fixes, column: value}) if spec is not None else sheet.score
    await repo.save_correction(sheet.id, column, value, user.id, score)
    return web.json_response((await sheet_entries(request, [await repo.sheet(sheet.id)]))[0])


def setup(app: web.Application) -> None:
    app.router.add_get("/api/sheets/{sheet_id}", get_sheet)
    app.router.add_get("/api/sheets/{sheet_id}/review.png", review_image)
    app.router.add_put("/api/sheets/{sheet_id}/answers/{column}", correct_answer)
