"""One rule for what an upload is, in every protocol (tus, IETF, legacy chunks, direct upload):
without upload_type an upload is zip_with_qr, except in the legacy forms whose contract makes
the field required (PRODUCT.md: 400); an upload of type zip_no_qr or images names a registered
task (400 naming the task, before any byte is kept)."""

from __future__ import annotations

import aiohttp
import pytest

from .helpers import OCTET, TUS, encode_metadata
from .test_omr_pipeline import register_task

UNREGISTERED = "87654321"


async def tus_create(api, meta: dict[str, str], **extra: str):
    """A creation with its whole body (creation-with-upload), so an accepted one is a batch."""
    headers = {**TUS, **api.auth(), "Upload-Length": "3", "Upload-Metadata": encode_metadata(meta), **extra}
    return await api.client.post("/files/", headers={**headers, **OCTET}, data=b"abc")


async def ietf_create(api, meta: dict[str, str]):
    headers = {**api.auth(), "Upload-Draft-Interop-Version": "6", "Upload-Complete": "?1"}
    headers["Upload-Metadata"] = encode_metadata(meta)
    return await api.client.post("/files/", data=b"abc", headers=headers)


def _form(name: str, fields: dict[str, str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, value)
    form.add_field(name, b"abc", filename="a.zip", content_type="application/zip")
    return form


async def legacy_create(api, meta: dict[str, str]):
    fields = {"chunk_index": "0", "total_chunks": "1", "filename": "a.zip", **meta}
    return await api.client.post("/api/batches/upload-chunk", data=_form("chunk", fields), headers=api.auth())


async def direct_create(api, meta: dict[str, str]):
    return await api.client.post("/api/batches/upload", data=_form("file", meta), headers=api.auth())


PROTOCOLS = {"tus": tus_create, "ietf": ietf_create, "legacy": legacy_create, "direct": direct_create}


async def _uploads(api) -> int:
    return (await api.get_json("/api/batches?limit=100"))["total"]


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
async def test_a_resumable_upload_without_a_type_is_zip_with_qr(api, protocol):
    """An off-the-shelf tus or IETF client sends no upload_type: its upload is a batch whose
    sheets' QR codes name their task."""
    resp = await PROTOCOLS[protocol](api, {"filename": "a.zip"})
    assert resp.status == 201, await resp.text()
    batches = await api.get_json("/api/batches?limit=100")
    assert [b["upload_type"] for b in batches["batches"]] == ["zip_with_qr"]


@pytest.mark.parametrize("protocol", ["legacy", "direct"])
async def test_the_legacy_forms_require_upload_type(api, protocol):
    resp = await PROTOCOLS[protocol](api, {"filename": "a.zip"})
    assert resp.status == 400
    assert "upload_type is required: one of zip_with_qr, zip_no_qr, images" in await resp.text()
    assert await _uploads(api) == 0
    resp = await PROTOCOLS[protocol](api, {"filename": "a.zip", "upload_type": "zip_with_qr"})
    assert resp.status in (200, 201), await resp.text()


@pytest.mark.parametrize("upload_type", ["zip_no_qr", "images"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_task_without_a_registered_template_is_refused_at_creation(api, protocol, upload_type):
    meta = {"filename": "a.zip", "upload_type": upload_type, "task_id": UNREGISTERED}
    resp = await PROTOCOLS[protocol](api, meta)
    assert resp.status == 400
    assert f"Task {UNREGISTERED} is not registered" in await resp.text()
    assert await _uploads(api) == 0
    await register_task(api, UNREGISTERED)
    resp = await PROTOCOLS[protocol](api, meta)
    assert resp.status in (200, 201), await resp.text()


async def test_a_tus_partial_upload_needs_no_task(api):
    """A partial upload is a piece of a file, never a batch: the final upload carries the type
    and the task, so a partial of type images needs no task id."""
    assert (await tus_create(api, {"filename": "a.zip"}, **{"Upload-Concat": "partial"})).status == 201
    resp = await tus_create(api, {"filename": "a.zip", "upload_type": "zip_with_qr"})
    assert resp.status == 201
