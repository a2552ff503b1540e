"""The omr-tus command: serve, migrate, users; and the client commands login, upload, batches,
tasks and the remote users commands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from .client import admin as client_admin
from .client import commands as client_commands
from .client.parsers import server_option
from .config import Settings
from .logs import setup_logging

log = logging.getLogger("omr_tus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omr-tus", description="Resumable uploads and OMR for exam sheets.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (applies pending migrations first)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: if there is no user yet, create 'admin' with a generated "
        "password and print it",
    )
    sub.add_parser("migrate", help="apply the database migrations")
    worker = sub.add_parser("worker", help="run OMR worker processes (on this or another machine)")
    worker.add_argument("--processes", type=int, default=1, help="how many worker processes (default 1)")
    sheets = sub.add_parser("sheets", help="printable answer sheets").add_subparsers(
        dest="sheets_command", required=True
    )
    render = sheets.add_parser("render", help="one sheet per student, from the task's registered template")
    render.add_argument("--task", required=True, help="the 8-digit task id")
    render.add_argument(
        "--students", required=True, type=Path, help="CSV whose first column is the student id"
    )
    render.add_argument("--out", required=True, type=Path, help="sheets.pdf, or sheet.png for PNG files")
    users = sub.add_parser(
        "users", help="manage users (create and passwd on the server itself, or --remote)"
    ).add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user; the password is read from stdin or a prompt")
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    passwd = users.add_parser("passwd", help="set a user's password (their older tokens stop working)")
    passwd.add_argument("username")
    client_admin.add_user_parsers(users, server_option(), (create, passwd))
    client_commands.add_parsers(sub)
    args = parser.parse_args(argv)
    if client_commands.is_client(args):  # a client needs no server settings
        return client_commands.run(args)
    if getattr(args, "quota", None) is not None:
        parser.error("users create --quota goes over the API: add --remote (or use omr-tus users quota)")

    if args.command == "serve":
        settings = Settings.load(host=args.host, port=args.port)
    else:
        settings = Settings.load()
    setup_logging(settings.log_level)
    try:
        if args.command == "serve":
            return _serve(settings, args.dev)
        if args.command == "worker":
            return _workers(settings, args.processes)
        if args.command == "sheets":
            return asyncio.run(_with_repo(settings, lambda repo: _render_sheets(repo, args)))
        if args.command == "migrate":
            asyncio.run(_with_repo(settings, lambda repo: asyncio.sleep(0)))
            return 0
        return asyncio.run(_with_repo(settings, lambda repo: _users(repo, args)))
    except ValueError as exc:
        print(f"omr-tus: {exc}", file=sys.stderr)
        return 2


async def _with_repo(settings: Settings, action):
    from .db.engine import make_engine
    from .db.migrate import migrate
    from .db.repo import Repo

    engine = make_engine(settings.database_url)
    try:
        await migrate(engine)
        return await action(Repo(engine))
    finally:
        await engine.dispose()


def _read_password(prompt: str = "Password: ") -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("Repeat: ") != first:
            raise ValueError("the passwords do not match")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _users(repo, args) -> int:
    from .auth import check_password, create_user, hash_password

    password = _read_password()
    if args.users_command == "create":
        await create_user(repo, args.username, password, admin=args.admin)
        print(f"user {args.username} created{' (admin)' if args.admin else ''}")
        return 0
    user = await repo.user_by_name(args.username)
    if user is None:
        raise ValueError(f"no user {args.username!r}")
    check_password(password)
    await repo.set_password(user.id, await asyncio.to_thread(hash_password, password))
    print(f"password of {args.username} changed; their older tokens no longer work")
    return 0


async def _render_sheets(repo, args) -> int:
    from .omr.printing import read_students, write_sheets
    from .omr.template import Template, TemplateError

    task = await repo.task(args.task)
    if task is None:
        raise ValueError(f"task {args.task} is not registered (POST /api/tasks)")
    try:
        template = Template.parse(task.template)
    except TemplateError as exc:
        raise ValueError(f"task {args.task}: {exc}") from None
    students = read_students(args.students)

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"\rrendered {done}/{total} sheets", end="\n" if done == total else "", flush=True)

    files = await asyncio.to_thread(write_sheets, template, args.task, students, args.out, progress)
    print(f"wrote {', '.join(str(f) for f in files[:3])}{' ...' if len(files) > 3 else ''}")
    return 0


def _serve(settings: Settings, dev: bool) -> int:
    """The app create_app() builds (workers and the first admin included), until a signal."""
    from .app import create_app
    from .runtime import limit_malloc_arenas

    limit_malloc_arenas()
    asyncio.run(_run_until_signalled(create_app(settings, dev=dev), settings))
    return 0


async def _run_until_signalled(app: web.Application, settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT; then stops accepting connections and gives the requests
    in flight shutdown_timeout to finish. A PATCH still running then is stopped and keeps its
    bytes. The wait is ours: aiohttp's own graceful shutdown stops reading request bodies at
    once (its connections drop incoming data once closing), so no upload could finish in it."""
    from .http.keys import METRICS

    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        print(f"======== Running on http://{settings.host}:{settings.port} ========", flush=True)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        await stop.wait()
        await site.stop()
        counters = app[METRICS]
        log.info(
            "stopping: %d requests in flight get up to %.0f s to finish",
            counters.in_flight,
            settings.shutdown_timeout,
        )
        deadline = time.monotonic() + settings.shutdown_timeout
        while counters.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110 -- a counter, not an event
            await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()


def _workers(settings: Settings, processes: int) -> int:
    """One worker in this process, plus processes-1 more beside it; SIGTERM stops them."""
    from .batches.processes import spawn_workers, stop
    from .runtime import limit_malloc_arenas, one_opencv_thread

    limit_malloc_arenas()
    one_opencv_thread()
    others = spawn_workers(max(processes - 1, 0))
    try:
        asyncio.run(_with_repo(settings, lambda repo: _run_worker(repo, settings)))
    finally:
        stop(others)
    return 0


async def _run_worker(repo, settings: Settings) -> None:
    from .batches.worker import Worker
    from .store.setup import open_stores

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_stores(settings) as stores:
        worker = Worker(repo, settings, stores.files, lease=settings.worker_lease)
        log.info("worker %s started", worker.name)
        await worker.run(stop)


if __name__ == "__main__":
    sys.exit(main())
