"""PATCH /files/{id}: offsets, content type, checksums, deferred length, completion."""

import base64
import hashlib
import zlib

import pytest

from .helpers import OCTET


def digest(algorithm: str, data: bytes) -> str:
    raw = (
        zlib.crc32(data).to_bytes(4, "big") if algorithm == "crc32" else hashlib.new(algorithm, data).digest()
    )
    return f"{algorithm} {base64.b64encode(raw).decode()}"


PATCH_CASES = [
    # (offset header, extra headers, body, status, expected offset afterwards, text)
    ("0", {}, b"hello", 204, 5, ""),
    ("5", {}, b"hello", 409, 0, "does not match"),
    (None, {}, b"hello", 400, 0, "Upload-Offset header is required"),
    ("-1", {}, b"hello", 400, 0, "non-negative integer"),
    ("x", {}, b"hello", 400, 0, "non-negative integer"),
    ("0", {"Content-Type": "application/octet-stream"}, b"hello", 415, 0, "offset+octet-stream"),
    ("0", {"Tus-Resumable": "0.2"}, b"hello", 412, 0, ""),
    ("0", {}, b"x" * 11, 413, 0, "end of the upload"),
    ("0", {"Upload-Checksum": digest("sha1", b"hello")}, b"hello", 204, 5, ""),
    ("0", {"Upload-Checksum": digest("md5", b"hello")}, b"hello", 204, 5, ""),
    ("0", {"Upload-Checksum": digest("sha256", b"hello")}, b"hello", 204, 5, ""),
    ("0", {"Upload-Checksum": digest("crc32", b"hello")}, b"hello", 204, 5, ""),
    ("0", {"Upload-Checksum": digest("sha1", b"other")}, b"hello", 460, 0, "discarded"),
    (
        "0",
        {"Upload-Checksum": "sha1 " + base64.b64encode(b"short").decode()},
        b"hello",
        460,
        0,
        "does not match",
    ),
    ("0", {"Upload-Checksum": "whirlpool AAAA"}, b"hello", 400, 0, "not supported"),
    ("0", {"Upload-Checksum": "sha1 !!notbase64"}, b"hello", 400, 0, "base64"),
]


@pytest.mark.parametrize("offset,extra,body,status,after,text", PATCH_CASES)
async def test_patch_table(api, offset, extra, body, status, after, text):
    path = await api.create(10)
    headers = {**api.tus(), **OCTET, **extra}
    if offset is not None:
        headers["Upload-Offset"] = offset
    resp = await api.client.patch(path, data=body, headers=headers)
    assert resp.status == status, await resp.text()
    assert text in await resp.text()
    if status == 409:
        assert resp.headers["Upload-Offset"] == "0"
    head = await api.head(path)
    assert head.headers["Upload-Offset"] == str(after)


async def test_chunks_in_order_complete_with_sha256(api):
    data = bytes(range(256)) * 4096  # 1 MiB
    path = await api.create(len(data), {"filename": "exam.zip"})
    for offset in range(0, len(data), 300_000):
        resp = await api.patch(path, offset, data[offset : offset + 300_000])
        assert resp.status == 204
        assert resp.headers["Upload-Offset"] == str(min(offset + 300_000, len(data)))
    assert resp.headers["Batch-Id"]
    assert "Upload-Expires" not in resp.headers
    batch = await api.batch(resp.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    assert batch["size"] == len(data)
    assert batch["status"] == "uploaded"


async def test_checksum_failure_leaves_no_trace_in_the_file(api):
    path = await api.create(10)
    assert (await api.patch(path, 0, b"hello")).status == 204
    bad = await api.patch(path, 5, b"XXXXX", **{"Upload-Checksum": digest("sha1", b"world")})
    assert bad.status == 460
    good = await api.patch(path, 5, b"world", **{"Upload-Checksum": digest("sha1", b"world")})
    assert good.status == 204
    batch = await api.batch(good.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(b"helloworld").hexdigest()


async def test_deferred_length_is_declared_by_a_later_patch(api):
    path = await api.create(None)
    head = await api.head(path)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert (await api.patch(path, 0, b"abc")).status == 204
    resp = await api.patch(path, 3, b"def", **{"Upload-Length": "6"})
    assert resp.status == 204
    assert "Batch-Id" in resp.headers
    resp = await api.patch(path, 6, b"", **{"Upload-Length": "7"})
    assert resp.status == 400  # the length is fixed once declared


async def test_length_declared_by_a_refused_patch_still_holds(api):
    """A PATCH that declares the length but is refused (wrong offset) has still fixed it."""
    path = await api.create(None)
    await api.patch(path, 0, b"abc")
    refused = await api.patch(path, 0, b"x", **{"Upload-Length": "5"})
    assert refused.status == 409
    assert (await api.head(path)).headers["Upload-Length"] == "5"
    assert (await api.patch(path, 3, b"defg")).status == 413  # past the declared end
    assert "Batch-Id" in (await api.patch(path, 3, b"de")).headers


async def test_deferred_length_smaller_than_received_is_refused(api):
    path = await api.create(None)
    await api.patch(path, 0, b"abcdef")
    resp = await api.patch(path, 6, b"", **{"Upload-Length": "3"})
    assert resp.status == 400
    assert "smaller than the bytes already received" in await resp.text()


async def test_empty_patch_on_complete_upload_is_idempotent(api):
    path = await api.create(3)
    first = await api.patch(path, 0, b"abc")
    again = await api.patch(path, 3, b"")
    assert again.status == 204
    assert again.headers["Batch-Id"] == first.headers["Batch-Id"]


async def test_method_override(api):
    path = await api.create(3)
    resp = await api.client.post(
        path,
        data=b"abc",
        headers={**api.tus(), **OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )
    assert resp.status == 204
    assert resp.headers["Upload-Offset"] == "3"


async def test_other_users_upload_is_not_found(api):
    path = await api.create(3)
    resp = await api.patch(path, 0, b"abc", user="bob")
    assert resp.status == 404
    assert (await api.head(path)).headers["Upload-Offset"] == "0"


async def test_admin_may_write_any_upload(api):
    path = await api.create(3)
    assert (await api.patch(path, 0, b"abc", user="root")).status == 204


async def test_unknown_upload(api):
    resp = await api.patch("/files/" + "0" * 32, 0, b"abc")
    assert resp.status == 404
    resp = await api.patch("/files/not-an-id", 0, b"abc")
    assert resp.status == 404
