"""IETF resumable uploads at /files/: OPTIONS, POST (creation, with a 104 interim response),
HEAD (offset retrieval), PATCH (append) and DELETE (cancellation), over the same
upload core as tus. omr_tus/resumable.py routes the IETF requests (see headers.is_ietf) here,
through `handle`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http import HttpVersion11

from .. import errors
from ..http.files import clean_filename
from ..http.keys import SERVICE, SETTINGS, principal
from ..http.urls import base_url
from ..tus import handlers as tus
from ..tus import headers as tus_headers
from ..uploads.digests import checked_metadata, merged, repr_digest
from ..uploads.model import UploadInfo
from . import headers as h

log = logging.getLogger("omr_tus.ietf")
_FILENAME = re.compile(r"""(?:^|;)\s*filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)
# Content types that label the transfer, not the file.
_TRANSFER_TYPES = ("", h.PARTIAL_UPLOAD, tus_headers.OFFSET_STREAM, "application/octet-stream")


def _common(v: h.Version) -> dict[str, str]:
    return {h.INTEROP: str(v.number)}


def _batch(info: UploadInfo) -> dict[str, str]:
    return {"Batch-Id": info.batch_id} if info.batch_id else {}


def _limits(request: web.Request, v: h.Version, info: UploadInfo | None = None) -> dict[str, str]:
    expires = info.expires_at if info is not None and not info.is_complete else None
    return v.limits(request.config_dict[SETTINGS].max_upload_size, expires)


async def options(request: web.Request, v: h.Version) -> web.Response:
    hdrs = _common(v)
    if v.patch_type:
        hdrs["Accept-Patch"] = v.patch_type
    hdrs.update(_limits(request, v))
    return web.Response(status=200, headers=hdrs)


async def create(request: web.Request, v: h.Version) -> web.Response:
    service = request.config_dict[SERVICE]
    if tus_headers.non_negative(request.headers.get("Upload-Offset"), errors.INVALID_OFFSET, "Upload-Offset"):
        raise errors.BAD_REQUEST("a creation request starts at offset 0: send no Upload-Offset")
    complete = v.requested_complete(request.headers, creation=True)
    length = _declared_length(v, request, 0, complete, None)
    service.check_length(length)
    raw_meta = request.headers.get("Upload-Metadata")
    meta = merged(
        checked_metadata(tus_headers.metadata(raw_meta)),
        repr_digest(request.headers.get("Repr-Digest")),
        "Repr-Digest",
    )
    upload_type, task_id = await service.kind(meta.get("upload_type"), meta.get("task_id"))
    filename = _disposition_filename(request.headers.get("Content-Disposition"))
    if filename is not None:
        meta.setdefault("filename", filename)
    filetype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if filetype not in _TRANSFER_TYPES:
        meta.setdefault("filetype", filetype)
    meta = {k: value for k, value in meta.items() if value is not None}
    info = await service.create(
        principal(request),
        length=length,
        metadata=meta,
        raw_metadata=raw_meta,
        filename=clean_filename(meta.get("filename")),
        upload_type=upload_type,
        task_id=task_id,
        protocol="ietf",
    )
    location = f"{base_url(request, request.config_dict[SETTINGS].trust_proxy_headers)}/files/{info.id}"
    await _interim(request, {**_common(v), "Location": location, **_limits(request, v, info)})
    try:
        info = await _transfer(request, v, info, 0, complete)
    except errors.ServiceError as exc:  # the upload exists: tell the client where
        exc.headers.update(Location=location)
        raise
    hdrs = {
        **_common(v),
        "Location": location,
        "Upload-Offset": str(info.offset),
        **v.completeness(info.is_complete),
        **_limits(request, v, info),
        **_batch(info),
    }
    return web.Response(status=201, headers=hdrs)


async def _interim(request: web.Request, headers: dict[str, str]) -> None:
    """Sends `104 Upload Resumption Supported` before the body is read. aiohttp has no API
    for informational responses, but it writes its own `100 Continue` the same way: straight
    to the request's writer, before the final response starts. Never to HTTP/1.0 clients."""
    if request.version < HttpVersion11:
        return
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    try:
        await request.writer.write(
            f"HTTP/1.1 104 Upload Resumption Supported\r\n{fields}\r\n".encode("latin-1")
        )
    except ConnectionError:  # the client is gone; reading the body will tell
        log.debug("104 not sent: connection closed")


def _disposition_filename(value: str | None) -> str | None:
    match = _FILENAME.search(value or "")
    if match is None:
        return None
    return match.group(1).replace('\\"', '"') if match.group(1) is not None else match.group(2)


def _declared_length(
    v: h.Version, request: web.Request, offset: int, complete: bool, known: int | None
) -> int | None:
    """The length the request declares (Upload-Length, or Upload-Complete: ?1 with a
    Content-Length), checked against itself and against what the upload already knows."""
    declared = [length for length in (v.length(request.headers), known) if length is not None]
    if complete and request.content_length is not None:
        declared.append(offset + request.content_length)
    if len(set(declared)) > 1:
        raise h.INCONSISTENT_LENGTH(
            f"the upload's length would be {' and '.join(map(str, sorted(set(declared))))}"
        )
    return declared[0] if declared else None


async def _transfer(
    request: web.Request, v: h.Version, info: UploadInfo, offset: int, complete: bool
) -> UploadInfo:
    """Appends the body, if any; on Upload-Complete: ?1 the upload then ends where the bytes
    end (the service creates the batch once the offset reaches a known length)."""
    length = _declared_length(v, request, offset, complete, info.length)
    if request.body_exists or (complete and length is not None):
        info = await tus.append_body(request, info.id, offset, length=length)
    if complete and not info.is_complete:
        if info.length is not None:  # the body ended short of the length it declared
            raise h.INCONSISTENT_LENGTH(
                f"Upload-Complete: ?1 at offset {info.offset}, but the upload's length is {info.length}"
            )
        info = await request.config_dict[SERVICE].declare_length(info.id, principal(request), info.offset)
    return info


async def head(request: web.Request, v: h.Version) -> web.Response:
    v.refuse(request.headers, v.refused_on_head)
    info = await request.config_dict[SERVICE].current(request.match_info["upload_id"], principal(request))
    hdrs = {
        **_common(v),
        "Cache-Control": "no-store",
        "Upload-Offset": str(info.offset),
        **v.completeness(info.is_complete),
        **_limits(request, v, info),
        **_batch(info),
    }
    if v.upload_length and info.length is not None:
        hdrs["Upload-Length"] = str(info.length)
    return web.Response(status=204, headers=hdrs)


async def patch(request: web.Request, v: h.Version) -> web.Response:
    if v.patch_type and request.headers.get("Content-Type", "").split(";")[0].strip().lower() != v.patch_type:
        raise errors.UNSUPPORTED_MEDIA(
            f"PATCH requests must use Content-Type: {v.patch_type} (interop version {v.number})"
        )
    offset = tus_headers.upload_offset(request.headers)
    complete = v.requested_complete(request.headers, creation=False)
    if digests := repr_digest(request.headers.get("Repr-Digest")):  # the whole file's, on an append too
        await request.config_dict[SERVICE].declare(
            request.match_info["upload_id"], principal(request), digests, "Repr-Digest"
        )
    info = await request.config_dict[SERVICE].get(request.match_info["upload_id"], principal(request))
    if info.is_complete:  # more bytes for it are an inconsistent length, where the version says so
        more = request.content_length or (request.body_exists and request.content_length is None)
        spec = h.INCONSISTENT_LENGTH if more and "inconsistent-upload-length" in v.problems else h.COMPLETED
        raise spec(f"Upload {info.id} is already complete at {info.offset} bytes")
    if offset != info.offset:  # checked again under the upload's lock by the service
        raise errors.OFFSET_MISMATCH(
            f"Upload-Offset {offset} does not match the upload's offset {info.offset}; "
            "send a HEAD request and resume from there",
            headers={"Upload-Offset": str(info.offset)},
        )
    info = await _transfer(request, v, info, offset, complete)
    hdrs = {
        **_common(v),
        "Upload-Offset": str(info.offset),
        **v.completeness(info.is_complete),
        **_batch(info),
    }
    return web.Response(status=v.append_status, headers=hdrs)


async def delete(request: web.Request, v: h.Version) -> web.Response:
    v.refuse(request.headers, v.refused_on_delete)
    await request.config_dict[SERVICE].terminate(request.match_info["upload_id"], principal(request))
    return web.Response(status=204, headers=_common(v))


IetfHandler = Callable[[web.Request, h.Version], Awaitable[web.Response]]
COLLECTION: dict[str, IetfHandler] = {"POST": create, "OPTIONS": options}
RESOURCE: dict[str, IetfHandler] = {"HEAD": head, "PATCH": patch, "DELETE": delete, "OPTIONS": options}


def error_response(request: web.Request, v: h.Version, exc: errors.ServiceError) -> web.Response:
    """problem+json where the version defines a problem type (and for every 409), plain text
    otherwise; never Tus-Resumable."""
    hdrs = {**_common(v), **exc.headers}
    if exc.status == 413:
        hdrs.update(_limits(request, v))
    body = h.problem(v, exc, request.headers.get("Upload-Offset"))
    if body is None:
        return web.Response(status=exc.status, text=exc.message + "\n", headers=hdrs)
    return web.Response(status=exc.status, body=json.dumps(body), content_type=h.PROBLEM_JSON, headers=hdrs)


async def handle(request: web.Request, methods: dict[str, IetfHandler]) -> web.Response:
    """The IETF request (omr_tus/resumable.py routes it here) to this module's handler for its
    method; the errors it raises answered as its interop version writes them."""
    ietf_handler = methods.get(request.method)
    if ietf_handler is None:
        raise web.HTTPMethodNotAllowed(request.method, list(methods))
    v = h.version(request.headers)
    try:
        return await ietf_handler(request, v)
    except errors.ServiceError as exc:
        return error_response(request, v, exc)
