"""/files: tus 1.0.0 and IETF resumable uploads, one aiohttp sub-application over the upload
core. Which protocol answers is decided in one place, `collection` and `resource` below: a
request with an IETF interop version and no Tus-Resumable (ietf.headers.is_ietf) goes to
omr_tus/ietf, every other to omr_tus/tus (downloads are the same for both).

The sub-application's middlewares, outermost first: errors as the protocols write them (plain
text; tus adds Tus-Resumable, IETF handlers answer their own errors as problem+json), the tus
version check (412, before authentication, as tus requires), authentication."""

from __future__ import annotations

from aiohttp import web

from .http.middlewares import authenticate, error_mapping
from .ietf import handlers as ietf
from .ietf import headers as ietf_headers
from .tus import handlers as tus
from .tus import headers as tus_headers

# Request and response fields of both protocols, for CORS (preflight and exposed headers).
FIELDS = tus_headers.FIELDS + ietf_headers.FIELDS


def _error(request: web.Request, status: int, message: str, headers: dict[str, str]) -> web.Response:
    if not ietf_headers.is_ietf(request.headers):
        headers["Tus-Resumable"] = tus_headers.TUS_VERSION
    return web.Response(status=status, text=message + "\n", headers=headers)


@web.middleware
async def tus_version(request: web.Request, handler):
    """412 before anything else, as tus requires (OPTIONS and downloads need no version); IETF
    requests carry Upload-Draft-Interop-Version instead."""
    if request.method not in ("OPTIONS", "GET") and not ietf_headers.is_ietf(request.headers):
        tus_headers.check_version(request.headers)
    return await handler(request)


async def collection(request: web.Request) -> web.StreamResponse:
    """/files and /files/: creation (POST) and capabilities (OPTIONS)."""
    if ietf_headers.is_ietf(request.headers):
        return await ietf.handle(request, ietf.COLLECTION)
    return await tus.COLLECTION[request.method](request)


async def resource(request: web.Request) -> web.StreamResponse:
    """/files/{upload_id}: an upload."""
    if ietf_headers.is_ietf(request.headers) and request.method != "GET":
        return await ietf.handle(request, ietf.RESOURCE)
    return await tus.upload_resource(request)


def create_files_app() -> web.Application:
    app = web.Application(middlewares=[error_mapping(_error), tus_version, authenticate])
    for path in ("", "/"):
        for method in tus.COLLECTION:
            app.router.add_route(method, path, collection)
    app.router.add_route("*", "/{upload_id}", resource)
    return app
