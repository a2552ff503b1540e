"""Tasks: the sheet template, OMRChecker config, answer key and the files they name, of one
exam. Admins register them, as JSON or as the OMRChecker files themselves (multipart); anyone
signed in may read them."""

from __future__ import annotations

import asyncio
import posixpath
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .. import errors
from ..batches.ingest import PageError, decode_page
from ..db.repo import Repo
from ..db.scores import Scores
from ..http.json_body import json_body, parse_json
from ..http.keys import REPO, principal
from ..http.multipart import FormPart, form_parts
from ..uploads.validation import TASK_ID
from .batches import iso

JSON_FILE_LIMIT = 1024 * 1024  # template.json, config.json, evaluation.json
ASSET_LIMIT = 8 * 1024 * 1024  # one marker or reference image, or an answer CSV
MAX_ASSETS = 16
FIELD_LIMIT = 1024
JSON_FILES = {"template": "template", "config": "config", "evaluation": "answer_key"}


def _require_admin(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can register or replace a task")


def _object(value: Any, what: str, example: str) -> dict | None:
    if value is not None and not isinstance(value, dict):
        raise errors.BAD_REQUEST(f"{what} must be a JSON object ({example})")
    return value


async def _json_body(request: web.Request) -> tuple[dict, dict[str, bytes]]:
    try:
        body = await json_body(request)
    except ValueError as exc:
        raise errors.BAD_REQUEST(
            'Send JSON: {"task_id", "name", "template": {...}, "answer_key": {...}} '
            f"or the OMRChecker files as multipart/form-data ({exc})"
        ) from None
    if not isinstance(body, dict):
        raise errors.BAD_REQUEST("The body must be a JSON object")
    return body, {}


def _asset_name(part: FormPart) -> str:
    """The name the template uses for the file: its relative path, without '..' or a root
    (percent-escapes undone: some clients send 'marks/x.jpg' as 'marks%2Fx.jpg')."""
    name = unquote(part.filename or "").replace("\\", "/")
    clean = posixpath.normpath(name) if name else ""
    if not clean or clean.startswith(("/", "../")) or clean == ".." or len(clean) > 255 or "\x00" in clean:
        raise errors.BAD_REQUEST(
            "Each 'asset' file needs a file name: the relative path the template "
            "or evaluation uses for it (e.g. omr_marker.jpg)"
        )
    return clean


async def _multipart_body(request: web.Request) -> tuple[dict, dict[str, bytes]]:
    """Fields task_id and name, files template, config and evaluation (JSON), files asset."""
    body: dict[str, Any] = {}
    assets: dict[str, bytes] = {}
    async for part in form_parts(request):
        if part.name in ("task_id", "name"):
            body[part.name] = await part.text(FIELD_LIMIT)
        elif part.name in JSON_FILES:
            try:
                body[JSON_FILES[part.name]] = await asyncio.to_thread(
                    parse_json, await part.read(JSON_FILE_LIMIT)
                )
            except (ValueError, UnicodeDecodeError) as exc:
                raise errors.BAD_REQUEST(f"The {part.name} file is not valid JSON: {exc}") from None
        elif part.name == "asset":
            name = _asset_name(part)
            if name in assets or len(assets) >= MAX_ASSETS:
                raise errors.BAD_REQUEST(
                    f"Send at most {MAX_ASSETS} asset files, each name once ({name!r} is one too many)"
                )
            assets[name] = await part.read(ASSET_LIMIT)
        else:
            raise errors.BAD_REQUEST(
                f"Unknown form field {part.name!r}: send task_id, name, template, "
                "config, evaluation and asset"
            )
    if "template" not in body:
        raise errors.BAD_REQUEST("Send the template.json as the file field 'template'")
    return body, assets


async def _task_values(request: web.Request, task_id: str | None = None) -> tuple[dict, dict[str, bytes]]:
    """The task's columns and its new asset files, validated the way the worker will use them."""
    from ..omr.scoring import AnswerKey, EvaluationError
    from ..omr.template import Template, TemplateError

    multipart = request.content_type.startswith("multipart/")
    body, assets = await (_multipart_body(request) if multipart else _json_body(request))
    task_id = task_id or body.get("task_id")
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise errors.BAD_REQUEST("task_id must be exactly 8 digits")
    name = body.get("name") or task_id
    if not isinstance(name, str) or len(name) > 256:
        raise errors.BAD_REQUEST("name must be a string of at most 256 characters")
    template = _object(body.get("template"), "template", "an OMRChecker template.json")
    if template is None:
        raise errors.BAD_REQUEST("template must be a JSON object (an OMRChecker template.json)")
    answer_key = _object(body.get("answer_key"), "answer_key", "an OMRChecker evaluation.json")
    config = _object(body.get("config"), "config", "an OMRChecker config.json")
    known = {**await request.app[REPO].task_assets(task_id), **assets} if request.method == "PUT" else assets
    try:
        parsed = await asyncio.to_thread(Template.parse, template, config, known)
    except TemplateError as exc:
        raise errors.BAD_REQUEST(f"Invalid template: {exc}") from None
    try:
        if answer_key is not None:
            answer_key = await _with_image_key(answer_key, parsed, known)
            await asyncio.to_thread(AnswerKey.parse, answer_key, known)
    except EvaluationError as exc:
        raise errors.BAD_REQUEST(f"Invalid answer_key: {exc}") from None
    return dict(
        task_id=task_id,
        name=name,
        template=template,
        answer_key=answer_key,
        config=config,
        created_by=principal(request).id,
    ), assets


async def _with_image_key(answer_key: dict, template, assets: dict[str, bytes]) -> dict:
    """The answer key as stored: read from its `answer_key_image_path` with the task's template
    when that is where it comes from (image work, so in a thread), else as sent."""
    from ..omr.key_image import key_from_image, key_image_name
    from ..omr.scoring import EvaluationError

    name = key_image_name(answer_key, assets)
    if name is None:
        return answer_key

    def read() -> dict:
        return key_from_image(
            answer_key, template, decode_page(assets[name], name, 1, template.page[0]), name
        )

    try:
        return await asyncio.to_thread(read)
    except PageError as exc:
        raise EvaluationError(f"options.answer_key_image_path: {exc}") from None


async def _task_response(request: web.Request, task_id: str, status: int = 200) -> web.Response:
    repo = request.app[REPO]
    row = await repo.task(task_id)
    if row is None:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    return web.json_response(
        {
            "task_id": row.task_id,
            "name": row.name,
            "template": row.template,
            "answer_key": row.answer_key,
            "config": row.config,
            "assets": [{"name": n, "size": s} for n, s in (await repo.asset_sizes(task_id)).items()],
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
            "rescoring": await rescoring(repo, task_id),
        },
        status=status,
    )


async def rescoring(repo: Repo, task_id: str) -> dict | None:
    """How far the task's sheets are scored under its current key: `active` until all are."""
    progress = await Scores(repo.engine).progress(task_id)
    if progress is None:
        return None
    return {"active": progress["sheets_done"] < progress["sheets_total"], **progress}


async def create_task(request: web.Request) -> web.Response:
    _require_admin(request)
    values, assets = await _task_values(request)
    if not await request.app[REPO].save_task(values, assets, replace=False):
        raise errors.CONFLICT(
            f"Task {values['task_id']} already exists; replace it with PUT /api/tasks/{values['task_id']}"
        )
    return await _task_response(request, values["task_id"], 201)


async def replace_task(request: web.Request) -> web.Response:
    """Replaces the template, config and answer key; asset files not sent again are kept."""
    _require_admin(request)
    values, assets = await _task_values(request, request.match_info["task_id"])
    if not await request.app[REPO].save_task(values, assets, replace=True):
        raise errors.NOT_FOUND(f"Task {values['task_id']} not found; create it with POST /api/tasks")
    return await _task_response(request, values["task_id"])


async def get_task(request: web.Request) -> web.Response:
    """For admins: a task holds its answer key, which no uploader may read (to them it does not exist)."""
    task_id = request.match_info["task_id"]
    if not principal(request).is_admin:
        raise errors.NOT_FOUND(f"Task {task_id} not found")
    return await _task_response(request, task_id)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/tasks", create_task)
    app.router.add_get("/api/tasks/{task_id}", get_task)
    app.router.add_put("/api/tasks/{task_id}", replace_task)
