"""POST /files/: creation, creation-with-upload, creation-defer-length, metadata checks."""

import base64
import hashlib

import pytest

from .helpers import OCTET, encode_metadata


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


CASES = [
    # (headers beyond Tus-Resumable and auth, expected status, text in body)
    ({"Upload-Length": "100"}, 201, ""),
    ({"Upload-Defer-Length": "1"}, 201, ""),
    ({}, 400, "exactly one of Upload-Length"),
    ({"Upload-Length": "100", "Upload-Defer-Length": "1"}, 400, "exactly one"),
    ({"Upload-Defer-Length": "2"}, 400, "Upload-Defer-Length must be 1"),
    ({"Upload-Length": "-1"}, 400, "non-negative integer"),
    ({"Upload-Length": "abc"}, 400, "non-negative integer"),
    ({"Upload-Length": str(64 * 1024**3 + 1)}, 413, "maximum upload size"),
    (
        {"Upload-Length": "10", "Upload-Metadata": f"filename,upload_type {b64('zip_with_qr')}"},
        201,
        "",
    ),  # a key without value
    ({"Upload-Length": "10", "Upload-Metadata": f"filename {b64('a.zip')}"}, 201, ""),  # zip_with_qr
    ({"Upload-Length": "10"}, 201, ""),  # an off-the-shelf client's creation, no metadata at all
    ({"Upload-Length": "10", "Upload-Metadata": "filename !!!"}, 400, "not base64"),
    ({"Upload-Length": "10", "Upload-Metadata": f"a {b64('x')},a {b64('y')}"}, 400, "appears twice"),
    ({"Upload-Length": "10", "Upload-Metadata": f"a {b64('x')} extra"}, 400, "is not 'key base64value'"),
    ({"Upload-Length": "10", "Upload-Metadata": f"upload_type {b64('pdf')}"}, 400, "Invalid upload_type"),
    ({"Upload-Length": "10", "Upload-Metadata": f"upload_type {b64('images')}"}, 400, "task_id is required"),
    (
        {"Upload-Length": "10", "Upload-Metadata": f"upload_type {b64('zip_no_qr')},task_id {b64('1234')}"},
        400,
        "exactly 8 digits",
    ),
    (
        {
            "Upload-Length": "10",
            "Upload-Metadata": f"upload_type {b64('zip_no_qr')},task_id {b64('11600111')}",
        },
        400,
        "Task 11600111 is not registered",
    ),
    ({"Upload-Length": "10", "Tus-Resumable": "0.2.2"}, 412, "1.0.0"),
    ({"Upload-Length": "10", "Upload-Metadata": "filename " + b64("a\x00b")}, 400, "without NUL"),
]


@pytest.mark.parametrize("headers,status,text", CASES)
async def test_creation_table(api, headers, status, text):
    resp = await api.client.post("/files/", headers=api.tus(**headers))
    body = await resp.text()
    assert resp.status == status, body
    assert text in body
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    if status == 201:
        assert resp.headers["Location"].startswith("http://127.0.0.1:")
        assert "Upload-Expires" in resp.headers
    if status == 412:
        assert resp.headers["Tus-Version"] == "1.0.0"


async def test_missing_tus_resumable_is_412_before_auth(client):
    resp = await client.post("/files/", headers={"Upload-Length": "1"})
    assert resp.status == 412
    assert resp.headers["Tus-Version"] == "1.0.0"


async def test_creation_needs_a_token(client):
    resp = await client.post("/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
    assert resp.status == 401
    assert "Bearer" in await resp.text()


async def test_ids_are_128_bit_random(api):
    paths = {await api.create(1) for _ in range(5)}
    assert len(paths) == 5
    assert all(len(p.rsplit("/", 1)[1]) == 32 for p in paths)


async def test_creation_with_upload_completes_in_one_request(api):
    data = b"x" * 1000
    headers = api.tus(
        **OCTET,
        **{
            "Upload-Length": "1000",
            "Upload-Metadata": encode_metadata({"filename": "s.zip", "upload_type": "zip_with_qr"}),
        },
    )
    resp = await api.client.post("/files/", data=data, headers=headers)
    assert resp.status == 201
    assert resp.headers["Upload-Offset"] == "1000"
    batch_id = resp.headers["Batch-Id"]
    batch = await api.batch(batch_id)
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    assert batch["filename"] == "s.zip"


async def test_creation_with_partial_upload(api):
    headers = api.tus(**OCTET, **{"Upload-Length": "10"})
    resp = await api.client.post("/files/", data=b"abcd", headers=headers)
    assert resp.status == 201
    assert resp.headers["Upload-Offset"] == "4"
    assert "Batch-Id" not in resp.headers


async def test_location_ignores_forwarded_headers_without_a_proxy(api):
    """trust_proxy_headers is false by default: a client not behind a proxy names no host."""
    resp = await api.client.post(
        "/files/",
        headers=api.tus(
            **{"Upload-Length": "1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.org"}
        ),
    )
    assert "uploads.example.org" not in resp.headers["Location"]


async def test_location_honours_forwarded_headers(api_with):
    api = await api_with(trust_proxy_headers=True)
    resp = await api.client.post(
        "/files/",
        headers=api.tus(
            **{"Upload-Length": "1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.org"}
        ),
    )
    assert resp.headers["Location"].startswith("https://uploads.example.org/files/")
    resp = await api.client.post(
        "/files/",
        headers=api.tus(
            **{"Upload-Length": "1", "Forwarded": 'for=1.2.3.4;proto=https;host="cdn.example.org:8443"'}
        ),
    )
    assert resp.headers["Location"].startswith("https://cdn.example.org:8443/files/")


async def test_location_rejects_injected_host(api_with):
    api = await api_with(trust_proxy_headers=True)
    resp = await api.client.post(
        "/files/", headers=api.tus(**{"Upload-Length": "1", "X-Forwarded-Host": "evil.org/<script>"})
    )
    assert resp.status == 201
    assert "evil" not in resp.headers["Location"]


async def test_filename_is_sanitized(api):
    path = await api.create(1, {"filename": "../../etc/pass\x01wd.zip"})
    resp = await api.patch(path, 0, b"x")
    batch = await api.get_json(f"/api/batches/{resp.headers['Batch-Id']}")
    assert batch["filename"] == "pass_wd.zip"


async def test_store_full_is_507_with_free_space(api, monkeypatch):
    from omr_tus.http.keys import STORE

    monkeypatch.setattr(api.client.app[STORE], "free_space", lambda: 5 * 1024 * 1024)
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": str(6 * 1024 * 1024)}))
    assert resp.status == 507
    assert "5.00MB free" in await resp.text()
    # what fits is still accepted, and counts against the space left for the next one
    await api.create(2 * 1024 * 1024)
    await api.create(2 * 1024 * 1024, user="bob")
    resp = await api.client.post("/files/", headers=api.tus("bob", **{"Upload-Length": str(2 * 1024 * 1024)}))
    assert resp.status == 507 and "1.00MB free" in await resp.text()
