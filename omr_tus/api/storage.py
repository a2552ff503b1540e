"""GET /api/storage (admins; the Storage page, `omr-tus storage`): what the incoming store (the
RAM disk, or a bucket) and the durable directory hold and have free, and what each user stores
against their quota. The directories are walked in a thread, at most SCAN_LIMIT files each:
past that the figures say `truncated`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from .. import errors
from ..http.keys import FILES, SETTINGS, STORE, principal
from ..store import LocalStore
from .users import admin_repo

SCAN_LIMIT = 100_000


def measure(directory: Path, limit: int = SCAN_LIMIT) -> dict:
    """The file system's free space (statvfs) and the count and size of the files under
    `directory`, counting at most `limit` files."""
    stat = os.statvfs(directory)
    files = used = 0
    truncated = False
    pending = [directory]
    while pending and not truncated:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    if files == limit:
                        truncated = True
                        break
                    files += 1
                    used += entry.stat(follow_symlinks=False).st_size
    return {
        "kind": "directory",
        "path": str(directory),
        "used_bytes": used,
        "free_bytes": stat.f_bavail * stat.f_frsize,
        "total_bytes": stat.f_blocks * stat.f_frsize,
        "files": files,
        "truncated": truncated,
    }


async def storage(request: web.Request) -> web.Response:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can see the storage overview")
    store = request.app[STORE]
    if isinstance(store, LocalStore):
        incoming = await asyncio.to_thread(measure, store.directory)
    else:  # a bucket has no free-space figure, and listing it is not cheap
        settings = request.app[SETTINGS]
        incoming = {"kind": "bucket", "bucket": settings.s3_bucket, "prefix": settings.s3_prefix}
    durable = await asyncio.to_thread(measure, request.app[FILES].durable.directory)
    rows = sorted(await admin_repo(request).users(), key=lambda row: (-int(row.usage_bytes), row.username))
    users = [
        {"id": r.id, "username": r.username, "usage_bytes": int(r.usage_bytes), "quota_bytes": r.quota_bytes}
        for r in rows
    ]
    return web.json_response({"incoming": incoming, "durable": durable, "users": users})


def setup(app: web.Application) -> None:
    app.router.add_get("/api/storage", storage)
