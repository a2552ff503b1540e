"""The client's subcommands of `omr-tus`: login, upload, batches, tasks and remote users.

They need no server settings or database, only the stored login (config.py), so `cli.main`
hands them over before it loads any server configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path

import aiohttp

from . import admin, api
from .config import credentials, normalize_server, save_credentials, stored_server
from .http import ClientError, ServerError, session
from .legacy import LegacyUpload
from .parsers import Subcommands, server_option
from .tables import batch_details, batch_list, size
from .tus import TusUpload
from .watch import wait_for_batch

MiB = 1024 * 1024
REQUEST_LIMIT_MIB = 100  # the CDN in front of the server refuses larger requests
UPLOAD_TYPES = ("zip_with_qr", "zip_no_qr", "images")
BATCH_STATUSES = ("uploaded", "processing", "completed", "failed")


def add_parsers(sub: Subcommands) -> None:
    server = server_option()

    login_ = sub.add_parser(
        "login",
        parents=[server],
        help="log in to a server; the token is stored for the other client commands",
    )
    login_.add_argument("--username", help="asked for if not given")

    upload_ = sub.add_parser(
        "upload",
        parents=[server],
        help="upload a file of scans; an interrupted upload continues when the command is run again",
    )
    upload_.add_argument("file", type=Path)
    upload_.add_argument("--type", dest="upload_type", required=True, choices=UPLOAD_TYPES)
    upload_.add_argument("--task-id", help="the 8-digit task id (required for zip_no_qr and images)")
    upload_.add_argument(
        "--chunk-size",
        type=chunk_size,
        default=50 * MiB,
        metavar="MiB",
        help=f"bytes per request, in MiB (default 50, less than {REQUEST_LIMIT_MIB})",
    )
    upload_.add_argument("--legacy", action="store_true", help="use the legacy chunk API instead of tus")
    upload_.add_argument("--wait", action="store_true", help="then follow the batch until it is read")

    batches_ = sub.add_parser("batches", help="your batches and their results").add_subparsers(
        dest="batches_command", required=True
    )
    list_ = batches_.add_parser("list", parents=[server], help="a table of your batches, newest first")
    list_.add_argument("--status", choices=BATCH_STATUSES)
    list_.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = batches_.add_parser("show", parents=[server], help="one batch")
    show.add_argument("batch_id")
    results = batches_.add_parser("results", parents=[server], help="a batch's results as JSON")
    results.add_argument("batch_id")
    results.add_argument("--csv", action="store_true", help="the results as CSV instead")
    delete = batches_.add_parser(
        "delete",
        parents=[server],
        help="delete a batch: its results, its upload and every stored copy of its file (owner or admin)",
    )
    delete.add_argument("batch_id")
    admin.add_task_parsers(sub, server)
    admin.add_storage_parser(sub, server)


def is_client(args: argparse.Namespace) -> bool:
    """Whether the command talks to a server over HTTP (then it needs no server settings)."""
    return args.command in COMMANDS and admin.remote(args)


def chunk_size(text: str) -> int:
    try:
        mib = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of MiB: {text!r}") from None
    if not 0 < mib < REQUEST_LIMIT_MIB:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and less than {REQUEST_LIMIT_MIB} MiB, the CDN's limit per request"
        )
    return int(mib * MiB)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(COMMANDS[args.command](args))
    except ClientError as exc:
        expired = isinstance(exc, ServerError) and exc.status == 401 and args.command != "login"
        print(f"omr-tus: {exc}{' (run omr-tus login for a new token)' if expired else ''}", file=sys.stderr)
    except (
        aiohttp.ClientError
    ) as exc:  # a call that is not retried (login, batches) could not reach the server
        print(f"omr-tus: cannot reach the server: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        resume = " (run the same command again to continue the upload)" if args.command == "upload" else ""
        print(f"\nomr-tus: interrupted{resume}", file=sys.stderr)
        return 130
    return 1


def ask(prompt: str, secret: bool = False) -> str:
    """From the terminal, or one line of stdin when it is not one (scripts, tests)."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt) if secret else input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise ClientError(f"{prompt.rstrip(': ').lower()} expected on stdin")
    return line.rstrip("\r\n")


async def login(args: argparse.Namespace) -> int:
    server = normalize_server(args.server) if args.server else stored_server()
    if not server:
        raise ClientError("pass --server URL")
    username = args.username or ask("Username: ")
    token = await api.login(server, username, ask("Password: ", secret=True))
    path = save_credentials(server, token)
    print(f"logged in to {server} as {username}; the token is stored in {path}")
    return 0


async def upload(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise ClientError(f"{args.file}: no such file")
    server, token = credentials(args.server)
    kind = LegacyUpload if args.legacy else TusUpload
    async with session(token) as http:
        batch_id = await kind(
            http,
            server,
            args.file,
            upload_type=args.upload_type,
            task_id=args.task_id,
            chunk_size=args.chunk_size,
        ).run()
        print(batch_id, flush=True)  # stdout holds only the id: BATCH=$(omr-tus upload ...)
        if not args.wait:
            return 0
        client = api.Api(http, server)
        if (await wait_for_batch(client, batch_id))["status"] == "failed":
            error = (await client.batch(batch_id)).get("error")
            raise ClientError(f"batch {batch_id} failed: {error or 'see omr-tus batches show ' + batch_id}")
    return 0


async def batches(args: argparse.Namespace) -> int:
    server, token = credentials(args.server)
    async with session(token) as http:
        client = api.Api(http, server)
        if args.batches_command == "list":
            answer = await client.batches(args.status, args.limit)
            print(batch_list(answer["batches"]) if answer["batches"] else "no batches")
            if answer["total"] > len(answer["batches"]):
                print(f"({len(answer['batches'])} of {answer['total']} shown; see --limit)", file=sys.stderr)
        elif args.batches_command == "show":
            print(batch_details(await client.batch(args.batch_id)))
        elif args.batches_command == "delete":
            batch = await client.delete_batch(args.batch_id)
            print(
                f"deleted batch {batch['batch_id']} ({batch['filename'] or 'no name'}, {size(batch['size'])})"
            )
        elif args.csv:
            await client.results_csv(args.batch_id, sys.stdout.buffer)
        else:
            print(json.dumps(await client.results(args.batch_id), indent=2, ensure_ascii=False))
    return 0


async def users(args: argparse.Namespace) -> int:
    return await admin.users(args, lambda: ask("Password: ", secret=True))


COMMANDS = {
    "login": login,
    "upload": upload,
    "batches": batches,
    "tasks": admin.tasks,
    "users": users,
    "storage": admin.storage,
}
