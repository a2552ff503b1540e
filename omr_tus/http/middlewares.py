"""Middlewares, outermost first: request id, CORS (errors included), error mapping,
tus version check, auth."""

from __future__ import annotations

import json
import logging
import secrets

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .. import errors
from ..db.engine import is_disk_full, is_outage
from ..ietf import headers as ietf
from ..logs import request_id
from ..tus.headers import check_version
from .keys import AUTH, METRICS, PRINCIPAL, SETTINGS

log = logging.getLogger("omr_tus.http")

TUS_HEADERS = (
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Expires",
    "Upload-Checksum",
)
ALLOW_HEADERS = ", ".join(
    ("Authorization", "Content-Type", "X-Requested-With", "X-HTTP-Method-Override", "X-Request-ID")
    + TUS_HEADERS
    + ietf.FIELDS
)
EXPOSE_HEADERS = ", ".join(("Location", "Batch-Id", "X-Request-ID") + TUS_HEADERS + ietf.FIELDS)
ALLOW_METHODS = "POST, GET, HEAD, PATCH, DELETE, PUT, OPTIONS"


def is_tus(request: web.Request) -> bool:
    return request.path == "/files" or request.path.startswith("/files/")


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


@web.middleware
async def cors(request: web.Request, handler):
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
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": "86400",
            },
        )
    response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        response.headers.add("Vary", "Origin")
    return response


def error_response(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The one place where errors become responses: plain text on tus routes, {"detail"} elsewhere."""
    headers = dict(headers or {})
    if is_tus(request):
        if not ietf.is_ietf(request.headers):
            headers["Tus-Resumable"] = "1.0.0"
        return web.Response(status=status, text=message + "\n", headers=headers)
    return web.Response(
        status=status, body=json.dumps({"detail": message}), content_type="application/json", headers=headers
    )


@web.middleware
async def error_mapping(request: web.Request, handler):
    try:
        return await handler(request)
    except errors.ServiceError as exc:
        return error_response(request, exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error_response(request, exc.status, message, headers)
    except HttpProcessingError as exc:  # a malformed body (multipart framing, chunked encoding)
        return error_response(request, 400, f"Malformed request body: {exc.message}")
    except Exception as exc:
        if is_disk_full(exc):
            log.error("the database's disk is full (%s %s)", request.method, request.path)
            return error_response(
                request,
                507,
                "The server's database is out of disk space; nothing was "
                "lost: retry later or contact the administrator",
                {"Retry-After": "60"},
            )
        if is_outage(exc):
            log.warning("database unavailable in %s %s: %s", request.method, request.path, type(exc).__name__)
            return error_response(request, 503, errors.UNAVAILABLE.message, {"Retry-After": "2"})
        if isinstance(exc, ConnectionError):
            return error_response(request, 400, "client connection lost")
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(request, 500, f"Internal server error (request id {request_id.get()})")


@web.middleware
async def reject_nul(request: web.Request, handler):
    """A NUL byte in a path or query is never meaningful here, and PostgreSQL refuses it in text."""
    if "\x00" in request.path or any(
        "\x00" in key or "\x00" in value for key, value in request.query.items()
    ):
        raise errors.BAD_REQUEST("The URL contains a NUL character; remove it")
    return await handler(request)


@web.middleware
async def tus_version(request: web.Request, handler):
    """412 before anything else, as tus requires (OPTIONS and downloads need no version); IETF
    resumable-upload requests carry Upload-Draft-Interop-Version instead (omr_tus/ietf)."""
    if is_tus(request) and request.method not in ("OPTIONS", "GET") and not ietf.is_ietf(request.headers):
        check_version(request.headers)
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler):
    match = request.match_info
    if (
        request.method != "OPTIONS"
        and match.http_exception is None
        and not getattr(match.handler, "public", False)
    ):
        request[PRINCIPAL] = await request.app[AUTH].principal(request.headers.get("Authorization"))
    return await handler(request)


MIDDLEWARES = [count_requests, request_context, cors, error_mapping, reject_nul, tus_version, authenticate]
