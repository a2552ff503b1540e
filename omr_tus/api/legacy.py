"""The legacy upload API the existing frontend speaks, byte for byte:
POST /api/batches/upload-chunk and POST /api/batches/upload (multipart/form-data)."""

from __future__ import annotations

from collections.abc import AsyncIterable

from aiohttp import web

from .. import errors
from ..http.body import interrupter, received
from ..http.files import clean_filename
from ..http.keys import CHUNKED, REPO, SERVICE, principal
from ..http.multipart import FormPart, form_parts
from ..uploads.chunked import ChunkedUploads, ChunkReceipt, Stored
from ..uploads.digests import checked_hex
from ..uploads.model import TYPES_NEEDING_TASK, Chunk
from ..uploads.service import MAX_CHUNK, too_large
from .batches import batch_json

FIELD_LIMIT = 4096
MAX_FIELDS = 32  # the frontend sends 6; a chunked request has no Content-Length to refuse up front
FIELDS_LIMIT = 64 * 1024  # all text fields together
FORM_SLACK = 1024 * 1024  # room for the other form fields and multipart framing


class Fields(dict[str, str]):
    """A form's text fields, bounded in number and in total size."""

    def __init__(self) -> None:
        super().__init__()
        self.count = self.size = 0

    async def add(self, part: FormPart) -> None:
        self.count += 1
        if self.count > MAX_FIELDS:
            raise errors.BAD_REQUEST(f"Too many form fields: send at most {MAX_FIELDS}")
        value = await part.text(FIELD_LIMIT)
        self.size += len(value.encode())
        if self.size > FIELDS_LIMIT:
            raise errors.TOO_LARGE(f"The form fields hold more than {FIELDS_LIMIT} bytes together")
        self[part.name] = value


def _body(request: web.Request, part: FormPart, blocks: AsyncIterable[bytes] | None = None) -> Chunk:
    """The part as a chunk; `blocks` when its bytes pass through something first (a claim's meter)."""
    return Chunk(
        blocks=part.blocks() if blocks is None else blocks,
        interrupt=interrupter(request),
        received=received(request),
    )


def _int(fields: dict[str, str], name: str, low: int) -> int:
    raw = fields.get(name)
    if raw is None or raw == "":
        raise errors.BAD_REQUEST(f"{name} is required")
    try:
        value = int(raw)
    except ValueError:
        raise errors.BAD_REQUEST(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < low:
        raise errors.BAD_REQUEST(f"{name} must be at least {low}, got {value}")
    return value


async def _kind(request: web.Request, fields: dict[str, str]) -> tuple[str, str | None]:
    return await request.config_dict[SERVICE].kind(
        fields.get("upload_type"), fields.get("task_id"), required=True
    )


def _sha256(fields: dict[str, str]) -> str | None:
    """The whole file's sha256 the client declares (optional), checked at completion."""
    raw = fields.get("sha256")
    return checked_hex("sha256", raw, "sha256") if raw else None


def _ready(fields: dict[str, str]) -> bool:
    """Whether the fields seen so far say where the chunk goes (else it is spooled)."""
    if "chunk_index" not in fields or "total_chunks" not in fields:
        return False
    if fields["chunk_index"] != "0":
        return "upload_id" in fields
    kind = fields.get("upload_type")
    return bool(kind and "filename" in fields and (kind not in TYPES_NEEDING_TASK or "task_id" in fields))


def _check_final_flag(fields: dict[str, str]) -> None:
    """is_final_chunk, when sent, is `true` or `false` (the client's own view; the server counts)."""
    if fields.get("is_final_chunk", "true") not in ("true", "false"):
        raise errors.BAD_REQUEST(
            f"is_final_chunk must be true or false, got {fields['is_final_chunk'][:40]!r}"
        )


async def _place(request: web.Request, fields: dict[str, str], chunk: Chunk) -> Stored:
    chunked: ChunkedUploads = request.app[CHUNKED]
    index = _int(fields, "chunk_index", 0)
    total = _int(fields, "total_chunks", 1)
    if index >= total:
        raise errors.BAD_REQUEST(f"Invalid chunk_index {index} (total: {total})")
    if index == 0:
        upload_type, task_id = await _kind(request, fields)
        filename = clean_filename(fields.get("filename"))
        if not filename:
            raise errors.BAD_REQUEST("filename is required")
        return Stored(
            await chunked.start(
                principal(request),
                chunk,
                total_chunks=total,
                filename=filename,
                upload_type=upload_type,
                task_id=task_id,
                sha256=_sha256(fields),
            ),
            0,
        )
    if not fields.get("upload_id"):
        raise errors.BAD_REQUEST("upload_id is required when chunk_index > 0")
    return await chunked.next(principal(request), fields["upload_id"], index, total, chunk)


async def upload_chunk(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_CHUNK + FORM_SLACK:
        raise too_large(request.content_length)  # decided before reading a byte of the body
    core = request.app[SERVICE]
    fields = Fields()
    receipt: Stored | None = None
    spooled: Chunk | None = None
    try:
        async for part in form_parts(request):
            if part.name != "chunk":
                await fields.add(part)
            elif receipt is not None or spooled is not None:
                raise errors.BAD_REQUEST("Send one chunk per request")
            elif _ready(fields):
                receipt = await _place(request, fields, _body(request, part))
            else:
                spooled = await core.spool(part.blocks())
        if receipt is None:
            if spooled is None:
                raise errors.BAD_REQUEST("The file field chunk is required")
            receipt = await _place(request, fields, spooled)
    finally:
        if spooled is not None and receipt is None:
            await core.discard(spooled)
    # Every field is read: only now may the chunk complete the upload (a sha256 or an invalid
    # is_final_chunk after the chunk is seen before any batch exists). The chunk stays stored.
    _check_final_flag(fields)
    if sha256 := _sha256(fields):  # on any chunk, the last one included
        await core.declare(receipt.info.id, principal(request), {"sha256": sha256}, "The sha256 field")
    return web.json_response(
        _receipt_json(await request.app[CHUNKED].received(receipt.info, receipt.index, receipt.counts))
    )


def _receipt_json(receipt: ChunkReceipt) -> dict:
    info = receipt.info
    body = {
        "upload_id": info.id,
        "chunk_index": receipt.chunk_index,
        "chunks_received": receipt.chunks_received,
        "total_chunks": info.total_chunks,
        "is_complete": receipt.complete,
    }
    if receipt.complete:
        body.update(batch_id=info.batch_id, status="uploaded", message="Batch uploaded successfully")
    else:
        body["message"] = f"Chunk {receipt.chunk_index + 1}/{info.total_chunks} received"
    return body


async def upload_direct(request: web.Request) -> web.Response:
    """One whole file in one request: streamed to the store, then the batch. Its space is
    claimed like a tus upload's: its Content-Length up front, or STEP bytes at a time as it
    comes (507 past the free space, 413 past the user's quota)."""
    chunked: ChunkedUploads = request.app[CHUNKED]
    core = request.app[SERVICE]
    user = principal(request)
    fields = Fields()
    info = None
    try:
        async with core.reserve(user.id, request.content_length or 0) as claim:
            async for part in form_parts(request):
                if part.name != "file":
                    await fields.add(part)
                    continue
                if info is not None:
                    raise errors.BAD_REQUEST("Send one file per request")
                body = _body(request, part, claim.metered(part.blocks()))
                # the type may follow the file in the form: it is checked, and set, once all fields are read
                info = await chunked.start(
                    user,
                    body,
                    total_chunks=1,
                    filename=clean_filename(part.filename) or "upload",
                    upload_type="zip_with_qr",
                    task_id=None,
                    room=core.max_upload_size,
                )
        if info is None:
            raise errors.BAD_REQUEST("The file field file is required")
        await core.set_kind(info, *await _kind(request, fields))
        if sha256 := _sha256(fields):
            await core.declare(info.id, user, {"sha256": sha256}, "The sha256 field")
            info.metadata["sha256"] = sha256
    except BaseException:
        if info is not None and not info.is_complete:
            await core.abandon(info)
        raise
    receipt = await chunked.received(info, 0)
    assert receipt.info.batch_id is not None  # one chunk of one: complete
    row = await request.app[REPO].batch(receipt.info.batch_id)
    assert row is not None
    return web.json_response(batch_json(row), status=201)


def setup(app: web.Application) -> None:
    app.router.add_post("/api/batches/upload-chunk", upload_chunk)
    app.router.add_post("/api/batches/upload", upload_direct)
