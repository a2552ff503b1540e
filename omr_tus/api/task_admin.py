"""The task list and preview of the Tasks page, and the check the upload page makes before
the first byte: GET /api/tasks (admins), GET /api/tasks/{id}/preview.png (admins: the
template drawn over a blank sheet, in the review pool) and GET /api/tasks/{id}/registered
(anyone signed in: only whether the task exists, never its template or key)."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from ..batches.tasks import load_task
from ..http.keys import REPO, REVIEW_POOL, principal
from ..uploads.validation import TASK_ID
from . import params
from .batches import iso
from .users import admin_repo


def _require_admin(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can list or preview tasks")


async def list_tasks(request: web.Request) -> web.Response:
    _require_admin(request)
    limit, offset = params.page(request.query, 100, 1000)
    rows, total = await admin_repo(request).tasks(limit, offset)
    return web.json_response(
        {
            "tasks": [
                {
                    "task_id": r.task_id,
                    "name": r.name,
                    "created_at": iso(r.created_at),
                    "updated_at": iso(r.updated_at),
                }
                for r in rows
            ],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


async def preview(request: web.Request) -> web.Response:
    from ..omr.preview import TooLarge, preview_png
    from ..omr.scoring import EvaluationError
    from ..omr.template import TemplateError

    _require_admin(request)
    task_id = request.match_info["task_id"]
    try:
        spec = await load_task(request.app[REPO], task_id)
    except (TemplateError, EvaluationError) as exc:
        raise errors.CONFLICT(f"Task {task_id}'s stored template no longer loads: {exc}") from None
    if spec is None:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    try:
        png = await request.app[REVIEW_POOL].run(preview_png, spec.template, task_id)
    except TooLarge as exc:
        raise errors.TOO_LARGE(f"Task {task_id}: {exc}") from None
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-cache"})


async def registered(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    if not TASK_ID.match(task_id):
        raise errors.BAD_REQUEST(f"task_id must be exactly 8 digits, got {task_id[:40]!r}")
    return web.json_response(
        {"task_id": task_id, "registered": await request.app[REPO].task(task_id) is not None}
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/tasks", list_tasks)
    app.router.add_get("/api/tasks/{task_id}/preview.png", preview)
    app.router.add_get("/api/tasks/{task_id}/registered", registered)
