"""Batches: what completed uploads become. GET /api/batches, /api/batches/{id}, .../progress;
DELETE /api/batches/{id} (the batch, its upload and every copy of its file); GET /api/deletions
(admin: the audit of deletions)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import Row

from .. import errors
from ..http.keys import REMOVALS, REPO, SERVICE, principal
from ..uploads.model import UPLOAD_TYPES
from . import params

STATUSES = ("uploaded", "processing", "completed", "failed")


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def batch_json(row: Row) -> dict:
    return {
        "batch_id": row.id,
        "upload_id": row.upload_id,
        "filename": row.filename,
        "size": row.size,
        "sha256": row.sha256,
        "upload_type": row.upload_type,
        "task_id": row.task_id,
        "status": row.status,
        "total_sheets": row.total_sheets,
        "processed_sheets": row.processed_sheets,
        "failed_sheets": row.failed_sheets,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "completed_at": iso(row.completed_at),
        "skipped": row.skipped or [],
        "skipped_count": row.skipped_count,
        "error": row.error,
        "file_deleted_at": iso(row.file_deleted_at),
    }


async def visible_batch(request: web.Request) -> Row:
    batch_id = request.match_info["batch_id"]
    row = await request.app[REPO].batch(batch_id)
    user = principal(request)
    if row is None or (row.owner_id != user.id and not user.is_admin):
        raise errors.NOT_FOUND(f"Batch {batch_id} not found")
    return row


async def list_batches(request: web.Request) -> web.Response:
    q = request.query
    user = principal(request)
    filters = {
        k: v
        for k, v in {
            "status": params.choice(q, "status", STATUSES),
            "upload_type": params.choice(q, "upload_type", UPLOAD_TYPES),
            "task_id": q.get("task_id") or None,
            "upload_id": q.get("upload_id") or None,
        }.items()
        if v is not None
    }
    limit, offset = params.page(q, 50, 500)
    rows, total = await request.app[REPO].list_batches(
        None if user.is_admin else user.id, filters, limit, offset
    )
    return web.json_response(
        {"batches": [batch_json(r) for r in rows], "total": total, "limit": limit, "offset": offset}
    )


async def get_batch(request: web.Request) -> web.Response:
    return web.json_response(batch_json(await visible_batch(request)))


async def progress(request: web.Request) -> web.Response:
    row = await visible_batch(request)
    done = row.processed_sheets + row.failed_sheets
    if row.total_sheets:
        pct = round(100.0 * done / row.total_sheets, 2)
    else:
        pct = 100.0 if row.status in ("completed", "failed") else 0.0
    return web.json_response(
        {
            "batch_id": row.id,
            "status": row.status,
            "total_sheets": row.total_sheets,
            "processed_sheets": row.processed_sheets,
            "failed_sheets": row.failed_sheets,
            "progress_percentage": pct,
        }
    )


async def reprocess(request: web.Request) -> web.Response:
    """Reads every sheet of a batch again (after a template or reader change); admins' corrections
    are kept and applied to the new reading."""
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can process a batch again")
    batch = await visible_batch(request)
    if batch.file_deleted_at is not None:
        raise errors.CONFLICT(
            f"Batch {batch.id}'s file was deleted on {iso(batch.file_deleted_at)} (retention); "
            "its sheets cannot be read again"
        )
    if batch.status != "completed" or not batch.total_sheets:
        raise errors.CONFLICT(
            f"Batch {batch.id} is {batch.status} with {batch.total_sheets or 0} sheets; only a "
            "completed batch with sheets can be processed again"
        )
    if not await request.app[REPO].reprocess_batch(batch.id):
        raise errors.CONFLICT(f"Batch {batch.id} changed meanwhile; load it again")
    return web.json_response(batch_json(await visible_batch(request)), status=202)


async def delete_batch(request: web.Request) -> web.Response:
    """The batch, its sheets, answers and corrections, its upload and every stored copy of its
    file; an audit row remains (who, what, when, how many bytes)."""
    batch = await visible_batch(request)
    await request.app[SERVICE].terminate(batch.upload_id, principal(request))
    return web.Response(status=204)


async def list_deletions(request: web.Request) -> web.Response:
    if not principal(request).is_admin:
        raise errors.FORBIDDEN("Only an admin can read the audit of deletions")
    limit, offset = params.page(request.query, 50, 500)
    rows, total = await request.app[REMOVALS].audit_rows(limit, offset)
    return web.json_response(
        {
            "deletions": [
                {
                    "what": r.what,
                    "batch_id": r.batch_id,
                    "upload_id": r.upload_id,
                    "filename": r.filename,
                    "size": r.size,
                    "owner": r.owner,
                    "deleted_by": r.deleted_by_name,
                    "reason": r.reason,
                    "deleted_at": iso(r.deleted_at),
                }
                for r in rows
            ],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/api/batches", list_batches)
    app.router.add_get("/api/batches/{batch_id}", get_batch)
    app.router.add_delete("/api/batches/{batch_id}", delete_batch)
    app.router.add_get("/api/deletions", list_deletions)
    app.router.add_get("/api/batches/{batch_id}/progress", progress)
    app.router.add_post("/api/batches/{batch_id}/reprocess", reprocess)
