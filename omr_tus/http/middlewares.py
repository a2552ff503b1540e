"""Middlewares, outermost first: request counting, request id, CORS (errors included), error
mapping, NUL check, auth. They know no upload protocol: a sub-application (omr_tus/resumable.py)
brings its own error format, checks and fields (the CORS lists) and authenticates inside its own
middlewares."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware

from .. import errors
from ..db.engine import is_disk_full, is_outage
from ..logs import request_id
from .keys import AUTH, METRICS, PRINCIPAL, SETTINGS

log = logging.getLogger("omr_tus.http")
ErrorRender = Callable[[web.Request, int, str, dict[str, str]], web.Response]

ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "X-Requested-With",
    "X-HTTP-Method-Override",
    "X-Request-ID",
)
EXPOSE_HEADERS = ("Location", "Batch-Id", "X-Request-ID")
ALLOW_METHODS = "POST, GET, HEAD, PATCH, DELETE, PUT, OPTIONS"


@web.middleware
async def count_requests(request: web.Request, handler):
    """Every answer counted by route template (not raw path: ids would explode the series)."""
    status = 499  # the client went away before an answer
    counters = request.app[METRICS]
    counters.in_flight += 1
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        counters.in_flight -= 1
        resource = request.match_info.route.resource
        counters.inc(
            "http_requests_total",
            route=resource.canonical if resource else "unmatched",
            method=request.method,
            status=str(status),
        )


@web.middleware
async def request_context(request: web.Request, handler):
    rid = request.headers.get("X-Request-ID", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = secrets.token_hex(8)
    token = request_id.set(rid)
    try:
        response = await handler(request)
        response.headers["X-Request-ID"] = rid
        return response
    finally:
        request_id.reset(token)


def cors(fields: tuple[str, ...]) -> Middleware:
    """CORS that a browser on an allowed origin can use, errors included; `fields`: the headers
    of the protocols served besides the API's own, allowed in requests and exposed in answers."""
    allow_headers = ", ".join(ALLOW_HEADERS + fields)
    expose_headers = ", ".join(EXPOSE_HEADERS + fields)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return await handler(request)
        origins = request.app[SETTINGS].cors_origins
        allowed = "*" in origins or origin in origins
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if not allowed:
                return web.json_response(
                    {
                        "detail": f"Origin {origin} is not allowed; ask the administrator to add "
                        "it to OMR_TUS_CORS_ORIGINS"
                    },
                    status=403,
                )
            return web.Response(
                status=200,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Vary": "Origin",
                    "Access-Control-Allow-Methods": ALLOW_METHODS,
                    "Access-Control-Allow-Headers": allow_headers,
                    "Access-Control-Max-Age": "86400",
                },
            )
        response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = expose_headers
            response.headers.add("Vary", "Origin")
        return response

    return middleware


def json_error(request: web.Request, status: int, message: str, headers: dict[str, str]) -> web.Response:
    """The API's errors: {"detail": message}."""
    return web.Response(
        status=status, body=json.dumps({"detail": message}), content_type="application/json", headers=headers
    )


def error_mapping(render: ErrorRender = json_error) -> Middleware:
    """The one place where errors become responses, written by `render` (an application's format)."""

    def answer(request: web.Request, status: int, message: str, headers: Mapping[str, str] | None = None):
        return render(request, status, message, dict(headers or {}))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.ServiceError as exc:
            return answer(request, exc.status, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {
                k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
            }
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            return answer(request, exc.status, message, headers)
        except HttpProcessingError as exc:  # a malformed body (multipart framing, chunked encoding)
            return answer(request, 400, f"Malformed request body: {exc.message}")
        except Exception as exc:
            if is_disk_full(exc):
                log.error("the database's disk is full (%s %s)", request.method, request.path)
                return answer(
                    request,
                    507,
                    "The server's database is out of disk space; nothing was "
                    "lost: retry later or contact the administrator",
                    {"Retry-After": "60"},
                )
            if is_outage(exc):
                log.warning(
                    "database unavailable in %s %s: %s", request.method, request.path, type(exc).__name__
                )
                return answer(request, 503, errors.UNAVAILABLE.message, {"Retry-After": "2"})
            if isinstance(exc, ConnectionError):
                return answer(request, 400, "client connection lost")
            log.exception("unhandled error in %s %s", request.method, request.path)
            return answer(request, 500, f"Internal server error (request id {request_id.get()})")

    return middleware


@web.middleware
async def reject_nul(request: web.Request, handler):
    """A NUL byte in a path or query is never meaningful here, and PostgreSQL refuses it in text."""
    if "\x00" in request.path or any(
        "\x00" in key or "\x00" in value for key, value in request.query.items()
    ):
        raise errors.BAD_REQUEST("The URL contains a NUL character; remove it")
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler):
    """The bearer token, unless the route is public. In every application's middlewares, it
    runs in the innermost one's (a sub-application's checks may come before it, as tus' 412)."""
    match = request.match_info
    if (
        match.current_app is match.apps[-1]
        and request.method != "OPTIONS"
        and match.http_exception is None
        and not getattr(match.handler, "public", False)
    ):
        request[PRINCIPAL] = await request.config_dict[AUTH].principal(request.headers.get("Authorization"))
    return await handler(request)


def middlewares(fields: tuple[str, ...]) -> list[Middleware]:
    """The application's middlewares; `fields`: the protocols' headers for CORS."""
    return [count_requests, request_context, cors(fields), error_mapping(), reject_nul, authenticate]
