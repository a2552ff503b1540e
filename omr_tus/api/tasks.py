"""Tasks: the sheet template (and answer key) of an exam. Admins register them; anyone
signed in may read them."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from ..http.keys import REPO, principal
from ..uploads.validation import TASK_ID
from .batches import iso


def _require_admin(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can register or replace a task")


async def _task_values(request: web.Request, task_id: str | None = None) -> dict:
    from ..omr.scoring import AnswerKey, EvaluationError
    from ..omr.template import Template, TemplateError

    try:
        body = await request.json()
    except ValueError:
        raise errors.BAD_REQUEST('Send JSON: {"task_id", "name", "template": {...}, "answer_key": {...}}') from None
    if not isinstance(body, dict):
        raise errors.BAD_REQUEST("The body must be a JSON object")
    task_id = task_id or body.get("task_id")
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise errors.BAD_REQUEST("task_id must be exactly 8 digits")
    name = body.get("name") or task_id
    if not isinstance(name, str) or len(name) > 256:
        raise errors.BAD_REQUEST("name must be a string of at most 256 characters")
    template, answer_key = body.get("template"), body.get("answer_key")
    if not isinstance(template, dict):
        raise errors.BAD_REQUEST("template must be a JSON object (an OMRChecker template.json)")
    if answer_key is not None and not isinstance(answer_key, dict):
        raise errors.BAD_REQUEST("answer_key must be a JSON object (an OMRChecker evaluation.json)")
    try:
        Template.parse(template)
    except TemplateError as exc:
        raise errors.BAD_REQUEST(f"Invalid template: {exc}") from None
    try:
        if answer_key is not None:
            AnswerKey.parse(answer_key)
    except EvaluationError as exc:
        raise errors.BAD_REQUEST(f"Invalid answer_key: {exc}") from None
    return dict(task_id=task_id, name=name, template=template, answer_key=answer_key,
                created_by=principal(request).id)


def task_json(row) -> dict:
    return {"task_id": row.task_id, "name": row.name, "template": row.template, "answer_key": row.answer_key,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


async def create_task(request: web.Request) -> web.Response:
    _require_admin(request)
    values = await _task_values(request)
    if not await request.app[REPO].save_task(values, replace=False):
        raise errors.CONFLICT(f"Task {values['task_id']} already exists; replace it with PUT /api/tasks/"
                              f"{values['task_id']}")
    return web.json_response(task_json(await request.app[REPO].task(values["task_id"])), status=201)


async def replace_task(request: web.Request) -> web.Response:
    _require_admin(request)
    values = await _task_values(request, request.match_info["task_id"])
    if not await request.app[REPO].save_task(values, replace=True):
        raise errors.NOT_FOUND(f"Task {values['task_id']} not found; create it with POST /api/tasks")
    return web.json_response(task_json(await request.app[REPO].task(values["task_id"])))


async def get_task(request: web.Request) -> web.Response:
    task_id = request.match_info["task_id"]
    row = await request.app[REPO].task(task_id)
    if row is None:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    return web.json_response(task_json(row))


def setup(app: web.Application) -> None:
    app.router.add_post("/api/tasks", create_task)
    app.router.add_get("/api/tasks/{task_id}", get_task)
    app.router.add_put("/api/tasks/{task_id}", replace_task)
