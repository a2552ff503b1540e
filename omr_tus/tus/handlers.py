"""tus 1.0.0 at /files/ (routed by omr_tus/resumable.py): OPTIONS, POST (creation), HEAD, PATCH,
DELETE and GET (download), over the upload core (omr_tus/uploads/service.py)."""

from __future__ import annotations

import email.utils
import re
from typing import Any

from aiohttp import web

from .. import errors
from ..http import body
from ..http.body import interrupter, received
from ..http.files import clean_filename, content_disposition
from ..http.keys import FILES, REPO, SERVICE, SETTINGS, STORE, principal
from ..http.urls import base_url
from ..store import RangeCopier, Truncater
from ..uploads.checksums import ALGORITHMS
from ..uploads.digests import checked_metadata, declared
from ..uploads.model import UploadInfo
from . import headers as h

BASE_EXTENSIONS = ["creation", "creation-with-upload", "creation-defer-length", "expiration", "termination"]
_MIME = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")  # fullmatch: "$" would let "\n" through


def extensions(store) -> list[str]:
    """What the store can do decides what is advertised (tusd's composer idea)."""
    exts = list(BASE_EXTENSIONS)
    if isinstance(store, Truncater):  # a failed checksum must be able to drop its bytes
        exts.append("checksum")
    if isinstance(store, RangeCopier):  # parts are placed into the final upload by the store
        exts += ["concatenation", "concatenation-unfinished"]
    return exts


def tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": h.TUS_VERSION, **extra}


def expires(info: UploadInfo) -> dict[str, str]:
    if info.expires_at is None or info.is_complete:
        return {}
    return {"Upload-Expires": email.utils.format_datetime(info.expires_at, usegmt=True)}


def _batch(info: UploadInfo) -> dict[str, str]:
    return {"Batch-Id": info.batch_id} if info.batch_id else {}


async def options(request: web.Request) -> web.Response:
    app = request.config_dict
    hdrs = tus_headers(
        **{
            "Tus-Version": h.TUS_VERSION,
            "Tus-Extension": ",".join(extensions(app[STORE])),
            "Tus-Max-Size": str(app[SETTINGS].max_upload_size),
        }
    )
    if "checksum" in hdrs["Tus-Extension"]:
        hdrs["Tus-Checksum-Algorithm"] = ",".join(ALGORITHMS)
    return web.Response(status=200, headers=hdrs)


async def create(request: web.Request) -> web.Response:
    service = request.config_dict[SERVICE]
    user = principal(request)
    concat, partial_ids = h.concat(request.headers.get("Upload-Concat"))
    if concat and "concatenation" not in extensions(request.config_dict[STORE]):
        raise errors.BAD_REQUEST(
            "This server's store (S3) cannot join partial uploads: the concatenation extension is not "
            "offered (see Tus-Extension); send the file as one upload"
        )
    if concat == "final" and (
        request.headers.get("Upload-Length") or request.headers.get("Upload-Defer-Length")
    ):
        raise errors.BAD_REQUEST("A final upload takes its length from its parts: send no Upload-Length")
    length = None if concat == "final" else h.creation_length(request.headers)
    service.check_length(length)
    raw_meta = request.headers.get("Upload-Metadata")
    meta = checked_metadata(h.metadata(raw_meta))
    if concat == "partial" and declared(meta):
        raise errors.BAD_REQUEST(
            "A partial upload's digest cannot be checked: declare the whole file's sha256 on the final upload"
        )
    upload_type, task_id = await service.kind(
        meta.get("upload_type"), meta.get("task_id"), part=concat == "partial"
    )
    with_body = request.headers.get("Content-Type", "").split(";")[0].strip() == h.OFFSET_STREAM
    if not with_body and request.content_length:
        raise errors.UNSUPPORTED_MEDIA(
            "a creation request with a body must use Content-Type: application/offset+octet-stream"
        )
    fields: dict[str, Any] = dict(
        metadata=meta,
        raw_metadata=raw_meta,
        filename=clean_filename(meta.get("filename")),
        upload_type=upload_type,
        task_id=task_id,
    )
    if concat == "final":
        if with_body:
            raise errors.FORBIDDEN("A final upload cannot carry a body")
        info = await service.concatenate(user, partial_ids, **fields)
    else:
        info = await service.create(user, length=length, concat=concat, **fields)
    location = f"{base_url(request, request.config_dict[SETTINGS].trust_proxy_headers)}/files/{info.id}"
    hdrs = tus_headers(Location=location)
    if with_body:
        try:
            info = await append_body(request, info.id, 0, length=None)
        except errors.ServiceError as exc:  # the upload exists: tell the client where, and what was kept
            exc.headers.update(Location=location)
            raise
        hdrs["Upload-Offset"] = str(info.offset)
    hdrs.update(expires(info))
    hdrs.update(_batch(info))
    return web.Response(status=201, headers=hdrs)


async def head(request: web.Request) -> web.Response:
    info = await request.config_dict[SERVICE].current(request.match_info["upload_id"], principal(request))
    hdrs = tus_headers(**{"Cache-Control": "no-store"})
    if info.concat != "final" or info.is_complete:  # a final has no offset until it is assembled
        hdrs["Upload-Offset"] = str(info.offset)
    if info.concat == "final":
        base = base_url(request, request.config_dict[SETTINGS].trust_proxy_headers)
        parts = await request.config_dict[REPO].parts_of(info.id)
        hdrs["Upload-Concat"] = "final;" + " ".join(f"{base}/files/{p.id}" for p in parts)
    elif info.concat == "partial":
        hdrs["Upload-Concat"] = "partial"
    if info.length is not None:
        hdrs["Upload-Length"] = str(info.length)
    elif info.concat != "final":
        hdrs["Upload-Defer-Length"] = "1"
    if info.raw_metadata:
        hdrs["Upload-Metadata"] = info.raw_metadata
    hdrs.update(expires(info))
    hdrs.update(_batch(info))
    return web.Response(status=200, headers=hdrs)


async def patch(request: web.Request) -> web.Response:
    if request.headers.get("Content-Type", "").split(";")[0].strip() != h.OFFSET_STREAM:
        raise errors.UNSUPPORTED_MEDIA()
    offset = h.upload_offset(request.headers)
    info = await append_body(
        request, request.match_info["upload_id"], offset, length=h.upload_length(request.headers)
    )
    hdrs = tus_headers(**{"Upload-Offset": str(info.offset)})
    hdrs.update(expires(info))
    hdrs.update(_batch(info))
    return web.Response(status=204, headers=hdrs)


async def append_body(request: web.Request, upload_id: str, offset: int, length: int | None) -> UploadInfo:
    """The request body appended at offset (also for IETF resumable uploads: omr_tus/ietf)."""
    checksum = h.checksum(request.headers.get("Upload-Checksum"))
    if checksum is not None and not isinstance(request.config_dict[STORE], Truncater):
        raise errors.BAD_REQUEST("this server's store cannot verify checksums")
    return await request.config_dict[SERVICE].append(
        upload_id,
        principal(request),
        offset,
        body.blocks(request.content),
        interrupt=interrupter(request),
        received=received(request),
        length=length,
        content_length=request.content_length,
        checksum=checksum,
    )


async def delete(request: web.Request) -> web.Response:
    await request.config_dict[SERVICE].terminate(request.match_info["upload_id"], principal(request))
    return web.Response(status=204, headers=tus_headers())


async def download(request: web.Request) -> web.StreamResponse:
    service = request.config_dict[SERVICE]
    info = await service.get(request.match_info["upload_id"], principal(request))
    if not info.is_complete:
        raise errors.BAD_REQUEST(
            f"Upload {info.id} is not complete yet ({info.offset} of "
            f"{info.length if info.length is not None else '?'} bytes)"
        )
    if info.file_deleted:
        raise errors.UPLOAD_GONE(
            f"Upload {info.id}'s file was deleted by retention; its batch's results are kept"
        )
    filetype = info.metadata.get("filetype", "")
    hdrs = {
        "Content-Disposition": content_disposition(info.filename, info.id),
        "Content-Type": filetype if _MIME.fullmatch(filetype) else "application/octet-stream",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    try:
        async with request.config_dict[FILES].stream(info.id, info.location) as (size, chunks):
            response = web.StreamResponse(headers=hdrs)
            response.content_length = size
            await response.prepare(request)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
            return response
    except FileNotFoundError:
        raise errors.NOT_FOUND(f"Upload {info.id} has no stored file") from None


COLLECTION = {"POST": create, "OPTIONS": options}
METHODS = {"HEAD": head, "PATCH": patch, "DELETE": delete, "GET": download, "OPTIONS": options}


async def upload_resource(request: web.Request) -> web.StreamResponse:
    """One entry for /files/{id}, so X-HTTP-Method-Override can choose the method."""
    method = request.method
    if method == "POST":
        method = request.headers.get("X-HTTP-Method-Override", "POST").upper()
    handler = METHODS.get(method)
    if handler is None:
        raise web.HTTPMethodNotAllowed(method, list(METHODS))
    return await handler(request)
