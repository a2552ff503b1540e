"""Whole-file digests a client declares at creation (tus Upload-Metadata sha256, IETF Repr-Digest
sha-256 / sha-512, the legacy API's sha256 field): checked for form at creation (400), and at
completion against the durable copy, before any batch is made; a mismatch fails the upload."""

from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import urlsplit

import aiohttp
import pytest

from .test_legacy_chunks import send

DATA = os.urandom(200_000)
SHA256 = hashlib.sha256(DATA).hexdigest()
WRONG = hashlib.sha256(b"something else").hexdigest()
META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}


def _sf(algorithm: str, digest: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(digest).decode()}:"


async def _batches(api, upload_id: str) -> list[dict]:
    return (await api.get_json(f"/api/batches?upload_id={upload_id}"))["batches"]


async def _no_batch_and_gone(api, path: str) -> None:
    assert await _batches(api, path.rsplit("/", 1)[-1]) == []
    head = await api.head(path)
    assert head.status == 410


async def test_tus_declared_sha256_is_checked_before_the_batch(api):
    path = await api.create(len(DATA), meta={**META, "sha256": SHA256.upper()})
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 204, await resp.text()
    # the completion waited for the durable copy: the batch has its sha256 at once
    batch = await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}")
    assert batch["sha256"] == SHA256 and batch["size"] == len(DATA)


async def test_tus_sha256_mismatch_fails_the_upload_without_a_batch(api, tmp_path):
    path = await api.create(len(DATA), meta={**META, "sha256": WRONG})
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 400
    text = await resp.text()
    assert f"the file's sha256 is {SHA256}, but {WRONG} was declared" in text and "no batch" in text
    await _no_batch_and_gone(api, path)
    upload_id = path.rsplit("/", 1)[-1]
    assert (
        not (tmp_path / "data" / "files" / upload_id).exists()
        and not (tmp_path / "store" / upload_id).exists()
    )


@pytest.mark.parametrize("value", ["abc", "g" * 64, SHA256 + "00", ""])
async def test_tus_malformed_sha256_is_refused_at_creation(api, value):
    headers = api.tus(
        **{
            "Upload-Length": "10",
            "Upload-Metadata": f"sha256 {base64.b64encode(value.encode()).decode()}" if value else "sha256",
        }
    )
    resp = await api.client.post("/files/", headers=headers)
    assert resp.status == 400
    assert "sha256" in await resp.text()


def _ietf(api, **extra) -> dict[str, str]:
    return {
        **api.auth(),
        "Upload-Draft-Interop-Version": "8",
        "Upload-Complete": "?1",
        "Upload-Metadata": "upload_type " + base64.b64encode(b"zip_with_qr").decode(),
        **extra,
    }


@pytest.mark.parametrize("algorithm,hasher", [("sha-256", hashlib.sha256), ("sha-512", hashlib.sha512)])
async def test_ietf_repr_digest_is_checked(api, algorithm, hasher):
    good = _sf(algorithm, hasher(DATA).digest())
    resp = await api.client.post(
        "/files/", data=DATA, headers=_ietf(api, **{"Repr-Digest": f"md5=:AAAA:, {good}"})
    )
    assert resp.status == 201, await resp.text()
    batch = await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}")
    assert batch["sha256"] == SHA256

    bad = _sf(algorithm, hasher(b"other").digest())
    resp = await api.client.post("/files/", data=DATA, headers=_ietf(api, **{"Repr-Digest": bad}))
    assert resp.status == 400 and f"the file's {algorithm.replace('-', '')} is" in await resp.text()
    assert "Batch-Id" not in resp.headers
    await _no_batch_and_gone(api, urlsplit(resp.headers["Location"]).path)


@pytest.mark.parametrize(
    "value", ["sha-256=abc", "sha-256=:" + base64.b64encode(b"short").decode() + ":", "sha-512=:!!:"]
)
async def test_ietf_malformed_repr_digest_is_refused_at_creation(api, value):
    resp = await api.client.post("/files/", data=DATA, headers=_ietf(api, **{"Repr-Digest": value}))
    assert resp.status == 400 and "Repr-Digest" in await resp.text()
    assert "Location" not in resp.headers  # refused before any upload was made


async def test_legacy_sha256_field(api):
    half = len(DATA) // 2
    first = await send(
        api,
        DATA[:half],
        chunk_index=0,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        sha256=SHA256,
    )
    last = await send(
        api,
        DATA[half:],
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert (await api.get_json(f"/api/batches/{last['batch_id']}"))["sha256"] == SHA256

    first = await send(
        api,
        DATA[:half],
        chunk_index=0,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        sha256=WRONG,
    )
    body = await send(
        api,
        DATA[half:],
        status=400,
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert "was declared" in body["detail"]
    assert await _batches(api, first["upload_id"]) == []

    body = await send(
        api,
        DATA,
        status=400,
        chunk_index=0,
        total_chunks=1,
        filename="a.zip",
        upload_type="zip_with_qr",
        sha256="not hex",
    )
    assert "sha256" in body["detail"]


async def test_legacy_direct_upload_with_sha256_after_the_file(api):
    for declared, status in ((SHA256, 201), (WRONG, 400)):
        form = aiohttp.FormData()
        form.add_field("file", DATA, filename="scan.zip")
        form.add_field("upload_type", "zip_with_qr")
        form.add_field("sha256", declared)
        resp = await api.client.post("/api/batches/upload", data=form, headers=api.auth())
        assert resp.status == status, await resp.text()
        if status == 201:
            assert (await resp.json())["sha256"] == SHA256


async def test_durable_before_ack_waits_for_the_durable_copy(api_with, tmp_path):
    api = await api_with(durable_before_ack=True)
    path = await api.create(len(DATA), meta=META)
    resp = await api.patch(path, 0, DATA)
    assert resp.status == 204
    batch = await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}")
    assert batch["sha256"] == SHA256  # no wait: recorded before the response
    upload_id = path.rsplit("/", 1)[-1]
    assert (tmp_path / "data" / "files" / upload_id).read_bytes() == DATA
    assert not (tmp_path / "store" / upload_id).exists()


async def test_ietf_repr_digest_on_an_append_is_checked_too(api):
    headers = _ietf(api, **{"Upload-Complete": "?0"})
    resp = await api.client.post("/files/", data=DATA[:1000], headers=headers)
    assert resp.status == 201, await resp.text()
    path = urlsplit(resp.headers["Location"]).path
    patch = {
        **api.auth(),
        "Upload-Draft-Interop-Version": "8",
        "Upload-Complete": "?1",
        "Upload-Offset": "1000",
        "Content-Type": "application/partial-upload",
        "Repr-Digest": _sf("sha-256", hashlib.sha256(b"other").digest()),
    }
    resp = await api.client.patch(path, data=DATA[1000:], headers=patch)
    assert resp.status == 400 and "was declared" in await resp.text()
    await _no_batch_and_gone(api, path)


async def test_legacy_sha256_field_after_the_chunk(api):
    half = len(DATA) // 2
    resp = await api.client.post(
        "/api/batches/upload-chunk",
        headers=api.auth(),
        data=_form(
            DATA[:half],
            chunk_index=0,
            total_chunks=2,
            filename="a.zip",
            upload_type="zip_with_qr",
            sha256=WRONG,
        ),
    )
    first = await resp.json()
    assert resp.status == 200, first
    body = await send(
        api,
        DATA[half:],
        status=400,
        chunk_index=1,
        total_chunks=2,
        filename="a.zip",
        upload_type="zip_with_qr",
        upload_id=first["upload_id"],
    )
    assert "was declared" in body["detail"]

    resp = await api.client.post(
        "/api/batches/upload-chunk",
        headers=api.auth(),
        data=_form(
            DATA, chunk_index=0, total_chunks=1, filename="a.zip", upload_type="zip_with_qr", sha256=WRONG
        ),
    )
    assert resp.status == 400  # checked although it came after the chunk that completes the upload
    assert "was declared" in (await resp.json())["detail"]
    assert (await api.get_json("/api/batches"))["batches"] == []  # and no batch of the unchecked file


async def test_legacy_sha256_field_on_the_last_chunk_is_checked(api):
    half = len(DATA) // 2
    first = await send(
        api, DATA[:half], chunk_index=0, total_chunks=2, filename="a.zip", upload_type="zip_with_qr"
    )
    resp = await api.client.post(
        "/api/batches/upload-chunk",
        headers=api.auth(),
        data=_form(
            DATA[half:],
            chunk_index=1,
            total_chunks=2,
            filename="a.zip",
            upload_type="zip_with_qr",
            upload_id=first["upload_id"],
            sha256=WRONG,
        ),
    )
    assert resp.status == 400 and "was declared" in (await resp.json())["detail"]
    assert (await api.get_json("/api/batches"))["batches"] == []


async def test_legacy_invalid_final_flag_after_the_chunk_makes_no_batch(api):
    form = aiohttp.FormData()
    for key, value in dict(
        chunk_index=0, total_chunks=1, filename="a.zip", upload_type="zip_with_qr"
    ).items():
        form.add_field(key, str(value))
    form.add_field("chunk", DATA, filename="blob", content_type="application/octet-stream")
    form.add_field("is_final_chunk", "maybe")
    resp = await api.client.post("/api/batches/upload-chunk", headers=api.auth(), data=form)
    assert resp.status == 400
    assert (await api.get_json("/api/batches"))["batches"] == []


def _form(chunk: bytes, **fields):
    """The form fields first, then the chunk, then the sha256 field."""
    sha256 = fields.pop("sha256")
    form = aiohttp.FormData()
    for key, value in fields.items():
        form.add_field(key, str(value))
    form.add_field("chunk", chunk, filename="blob", content_type="application/octet-stream")
    form.add_field("sha256", sha256)
    return form
