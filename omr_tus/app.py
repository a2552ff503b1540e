"""The aiohttp application: state in web.AppKey slots, resources in cleanup_ctx. What `omr-tus
serve` runs is this app as built here (tests run the same): database and migrations, the first
admin, the upload core, upkeep, and the OMR worker processes (settings.workers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets

from aiohttp import web

from .api import auth as auth_api
from .api import batches as batches_api
from .api import (
    health,
    legacy,
    openapi,
    results,
    sheets,
    statistics,
    storage,
    task_admin,
    tasks,
    users,
    webpage,
)
from .auth import Authenticator, create_user
from .batches import processes
from .batches.intake import BatchIntake
from .batches.removal import BatchRemoval
from .batches.retention import Retention
from .config import Settings
from .db.engine import count_round_trips, make_engine
from .db.migrate import migrate
from .db.removals import RemovalRepo
from .db.repo import Repo
from .http.keys import (
    AUTH,
    CHUNKED,
    ENGINE,
    FILES,
    METRICS,
    REMOVALS,
    REPO,
    RETENTION,
    SERVICE,
    SETTINGS,
    STORE,
    SWEEPER,
)
from .http.middlewares import middlewares
from .metrics import Counters
from .resumable import FIELDS, create_files_app
from .store.setup import open_stores
from .uploads.archive import Archiver
from .uploads.chunked import ChunkedUploads
from .uploads.removal import Remover
from .uploads.service import UploadService
from .uploads.shared_locks import open_locks
from .uploads.sweeper import Sweeper

log = logging.getLogger("omr_tus.app")
READ_BUFSIZE = 262144


def create_app(settings: Settings, *, run_migrations: bool = True, dev: bool = False) -> web.Application:
    """`dev`: development mode, where a first admin with a generated password is printed."""
    app = web.Application(middlewares=middlewares(FIELDS), handler_args={"read_bufsize": READ_BUFSIZE})
    app[SETTINGS] = settings
    app[METRICS] = Counters()
    app.cleanup_ctx.append(_database(run_migrations))
    app.cleanup_ctx.append(_first_admin(dev))
    app.cleanup_ctx.append(_uploads)
    app.cleanup_ctx.append(_janitor)
    app.cleanup_ctx.append(_workers)  # last: after the migrations; stopped first
    app.add_subapp("/files", create_files_app())  # tus and IETF resumable uploads
    auth_api.setup(app)
    legacy.setup(app)  # before batches: /api/batches/upload is not a batch id
    batches_api.setup(app)
    results.setup(app)
    sheets.setup(app)
    tasks.setup(app)
    statistics.setup(app)
    task_admin.setup(app)
    users.setup(app)
    storage.setup(app)
    health.setup(app)
    openapi.setup(app)
    webpage.setup(app)
    return app


def _database(run_migrations: bool):
    async def ctx(app: web.Application):
        settings = app[SETTINGS]
        engine = make_engine(settings.database_url)
        count_round_trips(engine, app[METRICS])
        if run_migrations:
            await migrate(engine)
        app[ENGINE] = engine
        app[REPO] = Repo(engine)
        app[AUTH] = Authenticator(
            app[REPO], settings.secret_key, settings.token_ttl, settings.password_hash_threads
        )
        yield
        await asyncio.to_thread(app[AUTH].close)
        await engine.dispose()

    return ctx


def _first_admin(dev: bool):
    async def ctx(app: web.Application):
        await bootstrap_admin(app[REPO], dev)
        yield

    return ctx


async def bootstrap_admin(repo: Repo, dev: bool) -> None:
    """The first admin: from OMR_TUS_ADMIN_PASSWORD, or generated and printed in dev mode."""
    if await repo.count_users():
        return
    username = os.environ.get("OMR_TUS_ADMIN_USERNAME", "admin")
    password = os.environ.get("OMR_TUS_ADMIN_PASSWORD")
    if password:
        await create_user(repo, username, password, admin=True)
        log.info("created admin user %r from OMR_TUS_ADMIN_PASSWORD", username)
    elif dev:
        password = secrets.token_urlsafe(12)
        await create_user(repo, username, password, admin=True)
        print(
            f"\n  development mode: created admin user {username!r} with password {password!r}\n", flush=True
        )
    else:
        log.warning(
            "no users yet: create one with 'omr-tus users create NAME --admin' "
            "or start with OMR_TUS_ADMIN_PASSWORD set"
        )


async def _workers(app: web.Application):
    """settings.workers OMR worker processes beside the server, stopped with it."""
    workers = processes.spawn_workers(app[SETTINGS].workers)
    if workers:
        log.info("started %d OMR worker processes (OMR_TUS_WORKERS=0 to run none here)", len(workers))
    yield
    await asyncio.to_thread(processes.stop, workers)


async def _uploads(app: web.Application):
    settings = app[SETTINGS]
    async with open_stores(settings) as stores, open_locks(settings, app[ENGINE]) as locks:
        archiver = Archiver(app[REPO], stores.incoming, locks, stores.files)
        app[REMOVALS] = RemovalRepo(app[ENGINE])
        service = UploadService(
            settings,
            app[REPO],
            stores.incoming,
            locks,
            app[METRICS],
            archiver=archiver,
            subscriber=BatchIntake(archiver),
            remover=Remover(app[REMOVALS], stores.incoming, stores.files, BatchRemoval()),
            scratch=stores.scratch,
        )
        app[RETENTION] = Retention(settings, app[REMOVALS], service)
        app[STORE], app[SERVICE], app[FILES] = stores.incoming, service, stores.files
        app[CHUNKED] = ChunkedUploads(service)
        app[SWEEPER] = Sweeper(
            app[REPO],
            stores.incoming,
            stores.durable,
            stores.scratch,
            stores.files.cache_dir,
            stale_after=max(600.0, 10 * settings.idle_timeout),
        )
        await service.recover()
        await service.finish_removals()  # one that fails is logged, and retried by the janitor
        await app[SWEEPER].sweep()
        log.info(
            "store %s, durable storage %s, %s locks",
            _describe(settings),
            settings.durable_dir,
            "PostgreSQL" if not locks.local_only else "in-process",
        )
        yield
        await service.drain()


def _describe(settings: Settings) -> str:
    if settings.store == "s3":
        return f"s3://{settings.s3_bucket}/{settings.s3_prefix} at {settings.s3_endpoint or 'AWS'}"
    return str(settings.store_dir)


async def _janitor(app: web.Application):
    """Background upkeep every janitor_interval: expired uploads, interrupted removals,
    retention, orphaned files; idle writers every second."""
    service, settings = app[SERVICE], app[SETTINGS]

    async def expire_uploads() -> None:
        if removed := await service.expire_due():
            log.info("janitor: %d expired uploads removed", removed)

    steps = (
        expire_uploads,
        app[AUTH].throttle.forget_old,
        service.finish_removals,
        app[RETENTION].apply,
        app[SWEEPER].sweep,
    )

    async def expire() -> None:
        while True:
            await asyncio.sleep(settings.janitor_interval)
            for step in steps:  # one failing step (a bucket away) never holds back the others
                try:
                    await step()
                except Exception:
                    log.exception("janitor: %s failed; retrying next interval", step.__name__)

    async def watch_idle() -> None:
        while True:
            await asyncio.sleep(min(1.0, settings.idle_timeout / 4))
            service.interrupt_idle()

    tasks = [asyncio.get_running_loop().create_task(job()) for job in (expire, watch_idle)]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
