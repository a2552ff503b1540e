"""POST /api/auth/login: form fields username and password -> a bearer token; GET /api/me: who
the token belongs to (the web page shows admin tools from it) and their storage use."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from ..db.admin_repo import AdminRepo
from ..http.keys import AUTH, REPO, SETTINGS, principal, public
from ..http.urls import client_address


@public
async def login(request: web.Request) -> web.Response:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise errors.BAD_REQUEST(
            "Send username and password as form fields "
            "(application/x-www-form-urlencoded or multipart/form-data)"
        )
    if request.content_length is not None and request.content_length > 16384:
        raise errors.BAD_REQUEST("The login form is too large")
    try:
        form = await request.post()
    except ValueError as exc:  # e.g. multipart/form-data without a boundary
        raise errors.BAD_REQUEST(
            f"Malformed login form ({exc}); send username and password as form fields"
        ) from None
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise errors.BAD_REQUEST("Both form fields username and password are required")
    address = client_address(request, request.app[SETTINGS].trust_proxy_headers)
    return web.json_response(await request.app[AUTH].login(username, password, address))


async def me(request: web.Request) -> web.Response:
    """Who the token belongs to, with their storage: usage_bytes and quota_bytes (null: none)."""
    user = principal(request)
    row = await AdminRepo(request.app[REPO].engine).user(user.id)
    return web.json_response(
        {
            "id": user.id,
            "username": user.username,
            "is_admin": user.is_admin,
            "quota_bytes": row.quota_bytes if row else None,
            "usage_bytes": int(row.usage_bytes) if row else 0,
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/api/auth/login", login)
    app.router.add_get("/api/me", me)
