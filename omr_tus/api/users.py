"""User administration for admins (the Users page, `omr-tus users` over the API):
GET/POST /api/users, PATCH /api/users/{id} (role, disabled, quota_bytes, password).

At least one enabled admin always remains (409 otherwise). Disabling a user or resetting their
password revokes their tokens (token_version); every change is logged with who made it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from .. import errors
from ..auth import check_password, create_user, hash_password
from ..db.admin_repo import AdminRepo, LastAdmin
from ..db.models import utcnow
from ..http.json_body import json_body
from ..http.keys import AUTH, REPO, SERVICE, principal
from .batches import iso

log = logging.getLogger("omr_tus.users")
ROLES = ("user", "admin")
MAX_QUOTA = 2**63 - 1  # a BIGINT
CHANGES = ("role", "disabled", "quota_bytes", "password")


def admin_repo(request: web.Request) -> AdminRepo:
    return AdminRepo(request.app[REPO].engine)


def _require_admin(request: web.Request) -> None:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can manage users")


def user_json(row: Row) -> dict:
    return {
        "id": row.id,
        "username": row.username,
        "role": row.role,
        "is_admin": row.role == "admin",
        "disabled": row.disabled_at is not None,
        "disabled_at": iso(row.disabled_at),
        "quota_bytes": row.quota_bytes,
        "usage_bytes": int(row.usage_bytes),
        "created_at": iso(row.created_at),
    }


async def _object_body(request: web.Request, example: str) -> dict[str, Any]:
    try:
        body = await json_body(request)
    except ValueError as exc:
        raise errors.BAD_REQUEST(f"Send a JSON object such as {example} ({exc})") from None
    if not isinstance(body, dict):
        raise errors.BAD_REQUEST(f"Send a JSON object such as {example}")
    return body


def _role(value: Any) -> str:
    if value not in ROLES:
        raise errors.BAD_REQUEST(f"role must be one of {', '.join(ROLES)}, got {value!r}")
    return value


def _quota(value: Any) -> int | None:
    """Bytes, or null for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA:
        raise errors.BAD_REQUEST(f"quota_bytes must be a number of bytes (0 or more) or null, got {value!r}")
    return value


async def _password_hash(request: web.Request, value: Any) -> str:
    if not isinstance(value, str):
        raise errors.BAD_REQUEST("password must be a string")
    try:
        check_password(value)
    except ValueError as exc:
        raise errors.BAD_REQUEST(str(exc)) from None
    return await asyncio.to_thread(hash_password, value)


async def list_users(request: web.Request) -> web.Response:
    _require_admin(request)
    return web.json_response({"users": [user_json(row) for row in await admin_repo(request).users()]})


async def create(request: web.Request) -> web.Response:
    _require_admin(request)
    body = await _object_body(request, '{"username": "clerk", "password": "...", "role": "user"}')
    unknown = set(body) - {"username", "password", "role", "quota_bytes"}
    if unknown:
        raise errors.BAD_REQUEST(
            f"Unknown field {sorted(unknown)[0]!r}: send username, password, role and quota_bytes"
        )
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise errors.BAD_REQUEST("username and password are required strings")
    role, quota = _role(body.get("role", "user")), _quota(body.get("quota_bytes"))
    repo = request.app[REPO]
    if await repo.user_by_name(username) is not None:
        raise errors.CONFLICT(f"User {username!r} already exists")
    try:
        user_id = await create_user(repo, username, password, admin=role == "admin")
    except ValueError as exc:
        raise errors.BAD_REQUEST(str(exc)) from None
    except IntegrityError:  # created meanwhile by another request
        raise errors.CONFLICT(f"User {username!r} already exists") from None
    if quota is not None:
        await admin_repo(request).change_user(user_id, {"quota_bytes": quota}, revoke=False)
        request.app[SERVICE].quotas_changed()
    log.info("admin %s created user %r (%s, quota %s)", principal(request).username, username, role, quota)
    return web.json_response(user_json(await _user(request, user_id)), status=201)


async def _user(request: web.Request, user_id: int) -> Row:
    """The user as stored now; 404 when deleted meanwhile."""
    row = await admin_repo(request).user(user_id)
    if row is None:
        raise errors.NOT_FOUND(f"User {user_id} not found")
    return row


async def change(request: web.Request) -> web.Response:
    """Any of role, disabled, quota_bytes, password. Disabling or a new password revokes the
    user's tokens; enabling them again does not bring old tokens back."""
    _require_admin(request)
    raw = request.match_info["user_id"]
    user_id = int(raw) if raw.isdigit() and len(raw) < 12 else 0
    body = await _object_body(request, '{"disabled": true} or {"quota_bytes": 1073741824}')
    unknown = set(body) - set(CHANGES)
    if unknown or not body:
        raise errors.BAD_REQUEST(
            f"Send one or more of {', '.join(CHANGES)}"
            + (f" (unknown field {sorted(unknown)[0]!r})" if unknown else "")
        )
    values: dict[str, Any] = {}
    if "role" in body:
        values["role"] = _role(body["role"])
    if "quota_bytes" in body:
        values["quota_bytes"] = _quota(body["quota_bytes"])
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise errors.BAD_REQUEST("disabled must be true or false")
        values["disabled_at"] = utcnow() if body["disabled"] else None
    if "password" in body:
        values["password_hash"] = await _password_hash(request, body["password"])
    revoke = bool(body.get("disabled")) or "password" in body
    try:
        found = await admin_repo(request).change_user(user_id, values, revoke)
    except LastAdmin:
        raise errors.CONFLICT("This would leave no enabled admin: make another user an admin first") from None
    if not found:
        raise errors.NOT_FOUND(f"User {raw} not found")
    request.app[AUTH].forget(user_id)  # their role or state counts from the next request on
    if "quota_bytes" in body:
        request.app[SERVICE].quotas_changed()
    row = await _user(request, user_id)
    changed = ", ".join(f"{k}={'***' if k == 'password' else body[k]!r}" for k in body)
    log.info("admin %s changed user %r: %s", principal(request).username, row.username, changed)
    return web.json_response(user_json(row))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users", create)
    app.router.add_patch("/api/users/{user_id}", change)
