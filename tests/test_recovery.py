"""Uploads that hold every byte but whose completion failed or never ran (a database blip, a
killed process) complete: on the client's retry, and at the next start."""

from __future__ import annotations

import asyncio
import os

import aiohttp
from sqlalchemy import text

from omr_tus.http.keys import ENGINE, REPO, SERVICE

from .test_legacy_chunks import send

DATA = os.urandom(200_000)
HALF = len(DATA) // 2
FIELDS = dict(total_chunks=2, filename="a.zip", upload_type="zip_with_qr")


def _form(chunk: bytes, **fields) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, str(value))
    form.add_field("chunk", chunk, filename="blob", content_type="application/octet-stream")
    return form


async def _last_chunk(api, upload_id: str):
    return await api.client.post(
        "/api/batches/upload-chunk",
        headers=api.auth(),
        data=_form(DATA[HALF:], chunk_index=1, upload_id=upload_id, **FIELDS),
    )


async def test_a_retried_last_chunk_completes_after_a_database_blip(api):
    repo = api.client.app[REPO]
    real = repo.completing
    calls = 0

    def blip(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("database restarting")
        return real(*args, **kwargs)

    repo.completing = blip
    first = await send(api, DATA[:HALF], chunk_index=0, **FIELDS)
    resp = await _last_chunk(api, first["upload_id"])
    assert resp.status == 503, await resp.text()
    retry = await send(api, DATA[HALF:], chunk_index=1, upload_id=first["upload_id"], **FIELDS)
    assert retry["is_complete"], retry


async def test_a_legacy_upload_whose_process_died_after_its_last_chunk_completes_at_start(api):
    """Killed between recording the last chunk and recording the length: active, no length."""
    repo = api.client.app[REPO]
    real = repo.update_upload

    async def die(upload_id, **values):
        if "length" in values:
            raise asyncio.CancelledError()  # the process is gone
        return await real(upload_id, **values)

    first = await send(api, DATA[:HALF], chunk_index=0, **FIELDS)
    repo.update_upload = die
    try:
        await _last_chunk(api, first["upload_id"])
    except Exception:  # noqa: BLE001 - the request died with the "process"
        pass
    repo.update_upload = real
    assert (await repo.upload(first["upload_id"])).status == "active"
    await api.client.app[SERVICE].complete_unfinished()  # what the next start runs
    row = await repo.upload(first["upload_id"])
    assert (row.status, row.length) == ("complete", len(DATA))


async def test_a_final_upload_assembled_before_a_crash_completes_at_start(api):
    """The parts were copied and recorded, finish() never ran (the process died)."""
    parts = []
    for piece in (DATA[:HALF], DATA[HALF:]):
        headers = api.tus(
            **{
                "Upload-Length": str(len(piece)),
                "Upload-Concat": "partial",
                "Upload-Metadata": "upload_type emlwX3dpdGhfcXI=",
            }
        )
        resp = await api.client.post("/files/", headers=headers)
        assert resp.status == 201, await resp.text()
        path = "/" + resp.headers["Location"].split("://", 1)[-1].split("/", 1)[-1]
        assert (await api.patch(path, 0, piece)).status == 204
        parts.append(path)
    service = api.client.app[SERVICE]
    real_finish = service._finish

    async def crash(info):
        raise asyncio.CancelledError()

    service._finish = crash
    headers = api.tus(
        **{"Upload-Concat": "final;" + " ".join(parts), "Upload-Metadata": "upload_type emlwX3dpdGhfcXI="}
    )
    try:
        await api.client.post("/files/", headers=headers)
    except Exception:  # noqa: BLE001
        pass
    service._finish = real_finish
    async with api.client.app[ENGINE].connect() as conn:
        final_id = (await conn.execute(text("SELECT id FROM uploads WHERE concat = 'final'"))).scalar_one()
    await api.client.app[SERVICE].complete_unfinished()  # what the next start runs
    row = await api.client.app[REPO].upload(final_id)
    assert (row.status, row.upload_offset) == ("complete", len(DATA))
