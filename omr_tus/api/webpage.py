"""The web page: GET / (index.html), /assets/{name} (the hashed bundles) and
/lib/chunked-upload.js (the legacy frontend's client module), all public.

They are built from web/ into omr_tus/web_dist/ by `npm run build` (`./dev serve` and `./dev test`
run it when the sources changed). That folder is package data, so `pip install .` after a build
puts the page into the wheel. Without a build, `/` answers 503 with how to make one.

Caching: the assets carry a content hash in their names, so they are cached for a year
(`immutable`); index.html and /lib/chunked-upload.js keep their URLs, so clients revalidate them
(`no-cache`, answered 304 through ETag / Last-Modified). Precompressed `.br` / `.gz` siblings
written by the build are sent to clients that accept them.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..http.keys import public

DIST = Path(
    str(resources.files("omr_tus") / "web_dist")
)  # a wheel installs as files, which FileResponse sends
DIST_KEY = web.AppKey("web_dist", Path)

NOT_BUILT = (
    "The web page is not built: run ./dev serve (it builds web/ with npm), or `npm ci && npm run build` in web/"
    " before `pip install .`.\n"
)
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The page loads only its own script and stylesheet; images are its own blob: URLs (review
# images fetched with the bearer token) and Uppy's thumbnails.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _dist(request: web.Request) -> Path:
    return request.app.get(DIST_KEY, DIST)


def _file(path: Path, cache: str, extra: dict[str, str] | None = None) -> web.FileResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text=f"{path.name} is not part of the web build")
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        **(extra or {}),
    }
    return web.FileResponse(path, headers=headers)


@public
async def index(request: web.Request) -> web.StreamResponse:
    page = _dist(request) / "index.html"
    if not page.is_file():
        return web.Response(
            status=503, text=NOT_BUILT, headers={"Cache-Control": "no-store", "Retry-After": "30"}
        )
    return _file(
        page,
        REVALIDATE,
        {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"},
    )


@public
async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if not ASSET_NAME.match(name) or name.endswith((".br", ".gz")):
        raise web.HTTPNotFound(text=f"No asset {name!r}")
    return _file(_dist(request) / "assets" / name, IMMUTABLE)


@public
async def chunked_upload_js(request: web.Request) -> web.StreamResponse:
    return _file(_dist(request) / "lib" / "chunked-upload.js", REVALIDATE)


@public
async def chunked_upload_map(request: web.Request) -> web.StreamResponse:
    return _file(_dist(request) / "lib" / "chunked-upload.js.map", REVALIDATE)


def _html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _js(description: str) -> dict:
    return {"description": description, "content": {"text/javascript": {"schema": {"type": "string"}}}}


NOT_FOUND = {
    "description": "Not part of the build",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}

OPENAPI_PATHS = {  # merged into /openapi.json by api/openapi.py
    "/": {
        "get": {
            "summary": "The web page (upload, batches, review)",
            "security": [],
            "responses": {
                "200": _html("index.html"),
                "503": {
                    "description": "The page is not built (run ./dev serve)",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            },
        }
    },
    "/assets/{name}": {
        "get": {
            "summary": "A bundled script or stylesheet of the page (content-hashed name, cached for a year)",
            "security": [],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file"}, "404": NOT_FOUND},
        }
    },
    "/lib/chunked-upload.js": {
        "get": {
            "summary": "ES module for the existing frontend: uploadFileInChunks, pollBatchProgress, setAuthToken",
            "security": [],
            "responses": {"200": _js("The module"), "404": NOT_FOUND},
        }
    },
    "/lib/chunked-upload.js.map": {
        "get": {
            "summary": "Source map of /lib/chunked-upload.js",
            "security": [],
            "responses": {"200": {"description": "The source map"}, "404": NOT_FOUND},
        }
    },
}


def setup(app: web.Application, dist: Path | None = None) -> None:
    if dist is not None:
        app[DIST_KEY] = dist
    app.router.add_get("/", index)
    app.router.add_get("/assets/{name}", asset)
    app.router.add_get("/lib/chunked-upload.js", chunked_upload_js)
    app.router.add_get("/lib/chunked-upload.js.map", chunked_upload_map)
