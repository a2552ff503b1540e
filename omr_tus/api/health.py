"""Liveness and readiness for load balancers and orchestrators; metrics for Prometheus."""

from __future__ import annotations

import asyncio
import os
import secrets

from aiohttp import web
from sqlalchemy import text

from .. import errors
from ..http.keys import ENGINE, FILES, METRICS, REPO, SERVICE, STORE, principal, public
from ..metrics import render
from ..store import LocalStore, RemoteFiles

MIN_FREE = 64 * 1024 * 1024
PROBE_SECONDS = 5


@public
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _probe_write(directory) -> None:
    path = os.path.join(directory, f".readyz-{secrets.token_hex(4)}")
    with open(path, "wb") as f:
        f.write(b"ok")
    os.unlink(path)


async def _off_loop(fn, *args):
    """Disk calls in a thread, given up after PROBE_SECONDS: a hung mount (a shared durable
    directory) makes the node not ready instead of stopping its event loop."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), PROBE_SECONDS)


async def _free(checks: dict[str, str], name: str, free_space) -> int:
    try:
        free = await _off_loop(free_space)
    except (OSError, TimeoutError) as exc:
        checks[name] = f"unknown: {type(exc).__name__}"
        return 0
    checks[name] = "ok" if free >= MIN_FREE else f"low: {free} bytes"
    return free


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
        if isinstance(store, LocalStore):
            await _off_loop(_probe_write, store.directory)
        elif isinstance(store, RemoteFiles):
            await asyncio.wait_for(store.ready(), PROBE_SECONDS)
        checks["store"] = "ok"
    except OSError as exc:
        checks["store"] = f"not writable: {exc.strerror}"
    except TimeoutError:
        checks["store"] = f"no answer in {PROBE_SECONDS} s"
    except Exception as exc:  # a bucket that cannot be reached
        checks["store"] = f"unreachable: {type(exc).__name__}"
    free = await _free(checks, "free_space", store.free_space)
    # Completed files go to durable storage: when it cannot take them they pile up on the RAM disk.
    durable = request.app[FILES].durable
    try:
        await _off_loop(_probe_write, durable.directory)
        checks["durable_store"] = "ok"
    except OSError as exc:
        checks["durable_store"] = f"not writable: {exc.strerror}"
    except TimeoutError:
        checks["durable_store"] = f"no answer in {PROBE_SECONDS} s"
    durable_free = await _free(checks, "durable_free_space", durable.free_space)
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "free_bytes": free,
            "durable_free_bytes": durable_free,
        },
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, for an admin token (scrapers send it as a bearer header)."""
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Metrics are for admins: scrape with an admin's bearer token")
    samples = request.app[METRICS].samples()
    waits, queries = request.app[SERVICE].lock_figures()
    samples["lock_waits_total"] = {(): float(waits)}
    if queries is not None:
        samples.setdefault("db_round_trips_total", {})[(("kind", "lock"),)] = float(queries)
    samples["requests_in_flight"] = {(): float(request.app[METRICS].in_flight - 1)}  # not this one
    samples.update(await request.app[REPO].operations_figures())
    return web.Response(
        body=render(samples).encode(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store"},
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", readyz)
