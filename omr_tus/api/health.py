"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import asyncio
import os
import secrets

from aiohttp import web
from sqlalchemy import text

from ..http.keys import ENGINE, SETTINGS, STORE, public

MIN_FREE = 64 * 1024 * 1024


@public
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _probe_write(directory) -> None:
    path = os.path.join(directory, f".readyz-{secrets.token_hex(4)}")
    with open(path, "wb") as f:
        f.write(b"ok")
    os.unlink(path)


@public
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        async with request.app[ENGINE].connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
        checks["database"] = "ok"
    except Exception as exc:  # report, do not raise: this route exists to say what is wrong
        checks["database"] = f"unreachable: {type(exc).__name__}"
    store = request.app[STORE]
    try:
        await asyncio.to_thread(_probe_write, request.app[SETTINGS].store_dir)
        checks["store"] = "ok"
    except OSError as exc:
        checks["store"] = f"not writable: {exc.strerror}"
    free = store.free_space()
    checks["free_space"] = "ok" if free >= MIN_FREE else f"low: {free} bytes"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks,
                              "free_bytes": free}, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
