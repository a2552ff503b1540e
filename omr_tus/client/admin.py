"""Admin commands over the API with the saved login (`omr-tus login`), for an admin who is not
on the server's machine: `omr-tus tasks create|list|show`, the remote `omr-tus users ...` and
`omr-tus storage`.

`users create` and `users passwd` stay server-side (straight to the database: the first admin
is made that way) unless given --remote; the other `users` subcommands always use the API."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import aiohttp

from . import tables
from .config import credentials
from .http import ClientError, check, session
from .parsers import Subcommands

TASK_FILES = ("template", "config", "evaluation")
MARKER_DEFAULT = "omr_marker.jpg"  # OMRChecker's CropOnMarkers marker when relativePath is not set
LOCAL_USER_COMMANDS = ("create", "passwd")
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def add_task_parsers(sub: Subcommands, server: argparse.ArgumentParser) -> None:
    tasks = sub.add_parser("tasks", help="exams: their templates and answer keys (admin)").add_subparsers(
        dest="tasks_command", required=True
    )
    create = tasks.add_parser(
        "create",
        parents=[server],
        help="register a task from an OMRChecker folder: template.json, config.json, "
        "evaluation.json and every file they name",
    )
    create.add_argument("--task-id", required=True, help="the 8-digit task id")
    create.add_argument("--name", help="the exam's name (default: the task id)")
    create.add_argument("--from", dest="folder", required=True, type=Path, help="the OMRChecker folder")
    create.add_argument("--replace", action="store_true", help="replace the task if it is registered")
    tasks.add_parser("list", parents=[server], help="registered tasks, newest first")
    show = tasks.add_parser("show", parents=[server], help="one task")
    show.add_argument("task_id")
    show.add_argument("--json", action="store_true", help="everything, as the server's JSON")


def add_storage_parser(sub: Subcommands, server: argparse.ArgumentParser) -> None:
    sub.add_parser(
        "storage",
        parents=[server],
        help="what the incoming and durable stores hold and have free, and each user's usage (admin)",
    )


def add_user_parsers(
    users: Subcommands,
    server: argparse.ArgumentParser,
    local: tuple[argparse.ArgumentParser, ...],
) -> None:
    """The remote user commands beside the local `create` and `passwd` (which gain --remote)."""
    for parser in local:
        parser.add_argument(
            "--remote", action="store_true", help="over the API as the logged-in admin (omr-tus login)"
        )
        parser.add_argument(
            "--server", help="with --remote: the server's URL (default: the one you logged in to)"
        )
    local[0].add_argument("--quota", type=byte_size, help="with --remote: storage quota, e.g. 20G")
    users.add_parser("list", parents=[server], help="every user: role, state, quota and usage (API)")
    for name, text in (
        ("disable", "disable a user: they cannot log in and their tokens stop working (API)"),
        ("enable", "enable a disabled user again (API)"),
    ):
        users.add_parser(name, parents=[server], help=text).add_argument("username")
    role = users.add_parser("role", parents=[server], help="make a user an admin, or an admin a user (API)")
    role.add_argument("username")
    role.add_argument("role", choices=("user", "admin"))
    quota = users.add_parser("quota", parents=[server], help="set a user's storage quota (API)")
    quota.add_argument("username")
    quota.add_argument("bytes", type=byte_size, help="bytes, with K, M, G or T (powers of 1024), or 'none'")


def byte_size(text: str) -> int | None:
    if text.lower() in ("none", "unlimited"):
        return None
    match = SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 20G, or none)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "_kmgt".index(unit)) if unit else int(number)


def remote(args: argparse.Namespace) -> bool:
    """False for the server-side `users create|passwd` (without --remote)."""
    return args.command != "users" or args.users_command not in LOCAL_USER_COMMANDS or args.remote


# -- tasks ----------------------------------------------------------------------
def named_files(data: Any) -> set[str]:
    """Every string in a JSON document that could name a file: OMRChecker names them in
    preProcessors' options (relativePath, reference) and in the evaluation's options
    (answer_key_csv_path, answer_key_image_path)."""
    if isinstance(data, dict):
        return set().union(*(named_files(v) for v in data.values())) if data else set()
    if isinstance(data, list):
        return set().union(*(named_files(v) for v in data)) if data else set()
    return {data} if isinstance(data, str) and "." in data else set()


def task_folder(folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(JSON files by form field, asset files by the name the JSON uses) of an OMRChecker folder."""
    if not (folder / "template.json").is_file():
        raise ClientError(f"{folder}: no template.json (pass the OMRChecker folder that holds it)")
    documents = {f: folder / f"{f}.json" for f in TASK_FILES if (folder / f"{f}.json").is_file()}
    names: set[str] = set()
    for field, path in documents.items():
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClientError(f"{path}: not valid JSON: {exc}") from None
        if field == "template":
            steps = data.get("preProcessors") if isinstance(data, dict) else None
            names |= named_files(steps)
            if any(isinstance(s, dict) and s.get("name") == "CropOnMarkers" for s in steps or []):
                names.add(MARKER_DEFAULT)
        elif field == "evaluation":
            names |= named_files(data.get("options") if isinstance(data, dict) else None)
    root = folder.resolve()
    assets = {}
    for name in sorted(names):
        path = (folder / name).resolve()
        if path.is_file() and path.is_relative_to(root) and ".." not in PurePosixPath(name).parts:
            assets[name] = path
    return documents, assets


async def create_task(http: aiohttp.ClientSession, server: str, args: argparse.Namespace) -> dict:
    documents, assets = task_folder(args.folder)
    with contextlib.ExitStack() as files:
        form = aiohttp.FormData()
        if not args.replace:
            form.add_field("task_id", args.task_id)
        form.add_field("name", args.name or args.task_id)
        for field, path in documents.items():
            form.add_field(field, files.enter_context(path.open("rb")), filename=path.name)
        for name, path in assets.items():  # streamed from disk, not read whole
            form.add_field("asset", files.enter_context(path.open("rb")), filename=name)
        url = f"{server}/api/tasks" + (f"/{quote(args.task_id, safe='')}" if args.replace else "")
        async with http.request("PUT" if args.replace else "POST", url, data=form) as response:
            task = await (await check(response)).json()
    print(f"sent {', '.join([p.name for p in documents.values()] + list(assets))}")
    return task


def task_summary(task: dict) -> str:
    template = task.get("template") or {}
    blocks = template.get("fieldBlocks") or {}
    key = task.get("answer_key")
    rows = [
        ("task_id:", task["task_id"]),
        ("name:", task["name"]),
        ("page:", " x ".join(str(v) for v in template.get("pageDimensions", [])) or "-"),
        ("field blocks:", ", ".join(blocks) or "-"),
        ("answer key:", "yes" if key else "none"),
        ("config:", "yes" if task.get("config") else "none"),
        ("created_at:", tables.cell(task.get("created_at"))),
        ("updated_at:", tables.cell(task.get("updated_at"))),
    ]
    rows += [("asset:", f"{a['name']} ({a['size']} bytes)") for a in task.get("assets", [])]
    return tables.table(rows)


async def tasks(args: argparse.Namespace) -> int:
    server, token = credentials(args.server)
    async with session(token) as http:
        if args.tasks_command == "create":
            task = await create_task(http, server, args)
            print(task_summary(task))
        elif args.tasks_command == "list":
            async with http.get(server + "/api/tasks", params={"limit": "1000"}) as response:
                listed = await (await check(response)).json()
            rows = [("TASK", "NAME", "CREATED", "UPDATED")] + [
                (t["task_id"], t["name"], tables.when(t["created_at"]), tables.when(t["updated_at"]))
                for t in listed["tasks"]
            ]
            print(tables.table(rows) if listed["tasks"] else "no tasks")
        else:
            async with http.get(f"{server}/api/tasks/{quote(args.task_id, safe='')}") as response:
                task = await (await check(response)).json()
            print(json.dumps(task, indent=2, ensure_ascii=False) if args.json else task_summary(task))
    return 0


# -- users ----------------------------------------------------------------------
def quota_text(value: int | None) -> str:
    return "none" if value is None else tables.size(value)


def user_rows(users: list[dict]) -> str:
    rows = [("ID", "USERNAME", "ROLE", "STATE", "QUOTA", "USAGE", "CREATED")] + [
        (
            str(u["id"]),
            u["username"],
            u["role"],
            "disabled" if u["disabled"] else "enabled",
            quota_text(u["quota_bytes"]),
            tables.size(u["usage_bytes"]),
            tables.when(u["created_at"]),
        )
        for u in users
    ]
    return tables.table(rows)


async def users(args: argparse.Namespace, read_password) -> int:
    server, token = credentials(args.server)
    async with session(token) as http:
        async with http.get(server + "/api/users") as response:
            listed = (await (await check(response)).json())["users"]
        if args.users_command == "list":
            print(user_rows(listed))
            return 0
        if args.users_command == "create":
            body = {
                "username": args.username,
                "password": read_password(),
                "role": "admin" if args.admin else "user",
                "quota_bytes": args.quota,
            }
            async with http.post(server + "/api/users", json=body) as response:
                user = await (await check(response)).json()
            print(
                f"user {user['username']} created ({user['role']}, quota {quota_text(user['quota_bytes'])})"
            )
            return 0
        found = [u for u in listed if u["username"] == args.username]
        if not found:
            raise ClientError(f"no user {args.username!r}")
        change: dict[str, Any] = {
            "disable": lambda: {"disabled": True},
            "enable": lambda: {"disabled": False},
            "role": lambda: {"role": args.role},
            "quota": lambda: {"quota_bytes": args.bytes},
            "passwd": lambda: {"password": read_password()},
        }[args.users_command]()
        async with http.patch(f"{server}/api/users/{found[0]['id']}", json=change) as response:
            user = await (await check(response)).json()
    state = "disabled" if user["disabled"] else "enabled"
    print(
        f"user {user['username']}: {user['role']}, {state}, quota {quota_text(user['quota_bytes'])}"
        + ("; their older tokens no longer work" if args.users_command in ("passwd", "disable") else "")
    )
    return 0


# -- storage --------------------------------------------------------------------
def store_row(name: str, store: dict) -> tuple[str, ...]:
    if store["kind"] == "bucket":  # not measured: a bucket has no free space, listing it is costly
        return (name, f"s3://{store['bucket']}/{store['prefix']}", "-", "-", "-")
    files = f"{store['files']}+" if store["truncated"] else str(store["files"])  # the walk stopped there
    return (name, store["path"], files, tables.size(store["used_bytes"]), tables.size(store["free_bytes"]))


def storage_text(figures: dict) -> str:
    """The Storage page as text: the two stores, then the users by usage."""
    stores = [("STORE", "WHERE", "FILES", "USED", "FREE")] + [
        store_row(name, figures[name]) for name in ("incoming", "durable")
    ]
    users = [("USERNAME", "USAGE", "QUOTA", "USED")] + [
        (
            u["username"],
            tables.size(u["usage_bytes"]),
            quota_text(u["quota_bytes"]),
            "-" if not u["quota_bytes"] else f"{u['usage_bytes'] / u['quota_bytes']:.0%}",
        )
        for u in figures["users"]
    ]
    return tables.table(stores) + "\n\n" + tables.table(users)


async def storage(args: argparse.Namespace) -> int:
    server, token = credentials(args.server)
    async with session(token) as http:
        async with http.get(server + "/api/storage") as response:
            print(storage_text(await (await check(response)).json()))
    return 0
