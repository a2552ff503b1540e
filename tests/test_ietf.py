"""IETF "Resumable Uploads for HTTP" at /files/, interop versions 3 to 8, on SQLite and
PostgreSQL: creation (with and without a body, 104 on a raw socket), HEAD, PATCH, the 409
problem, DELETE, auth; and tus-js-client's IETF protocols through Node, with a resume.

WIRE states each version's facts independently of omr_tus/ietf/headers.py, so a mistake in
that table fails here."""

from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestServer

from omr_tus.app import create_app

from .conftest import users_and_tokens
from .helpers import encode_metadata
from .live import MiB, live, random_file, upload_id_of  # noqa: F401  (live is a fixture)
from .test_client_tusjs import node, run_upload  # noqa: F401  (node is a fixture)

PROBLEMS = "https://iana.org/assignments/http-problem-types#"
PARTIAL = "application/partial-upload"
META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}

# field: the completeness field; done / more: its value for a complete / incomplete upload;
# absent: what a PATCH without it does (True completes, False does not, None is a 400);
# patch_type: the required PATCH Content-Type; length: Upload-Length exists; age: the lifetime
# key of Upload-Limit (None: no Upload-Limit); typed: problem types exist; inconsistent: the
# inconsistent-upload-length type exists; append: the status of a successful PATCH.
V3 = {
    "field": "Upload-Incomplete",
    "done": "?0",
    "more": "?1",
    "absent": True,
    "patch_type": None,
    "length": False,
    "age": None,
    "typed": False,
    "inconsistent": False,
    "append": 201,
}
V4 = dict(V3, field="Upload-Complete", done="?1", more="?0", absent=False)
V6 = dict(V4, patch_type=PARTIAL, length=True, age="expires", typed=True)
V7 = dict(V6, age="max-age", inconsistent=True, append=204)
WIRE = {3: V3, 4: V4, 5: V4, 6: V6, 7: V7, 8: dict(V7, absent=None)}
VERSIONS = list(WIRE)


def ietf(api, v: int, user: str = "alice", **extra: str) -> dict[str, str]:
    return {**api.auth(user), "Upload-Draft-Interop-Version": str(v), **extra}


def state(v: int, complete: bool) -> dict[str, str]:
    w = WIRE[v]
    return {w["field"]: w["done"] if complete else w["more"]}


def patch_headers(api, v: int, offset: int, complete: bool | None, **extra: str) -> dict[str, str]:
    hdrs = ietf(api, v, **{"Upload-Offset": str(offset), **extra})
    if WIRE[v]["patch_type"]:
        hdrs.setdefault("Content-Type", WIRE[v]["patch_type"])
    if complete is not None:
        hdrs.update(state(v, complete))
    return hdrs


async def create(api, v: int, body: bytes = b"", complete: bool = False, meta=META, **extra: str):
    hdrs = ietf(api, v, **state(v, complete), **extra)
    if meta is not None:
        hdrs["Upload-Metadata"] = encode_metadata(meta)
    return await api.client.post("/files/", data=body, headers=hdrs)


async def created(api, v: int, body: bytes = b"", complete: bool = False, **extra: str) -> str:
    resp = await create(api, v, body, complete, **extra)
    assert resp.status == 201, (resp.status, await resp.text())
    return urlsplit(resp.headers["Location"]).path


async def head(api, v: int, path: str, **extra: str):
    return await api.client.head(path, headers=ietf(api, v, **extra))


def check_limits(v: int, headers, upload_open: bool = True) -> None:
    age = WIRE[v]["age"]
    if age is None:
        assert "Upload-Limit" not in headers
        return
    members = dict(m.strip().split("=") for m in headers["Upload-Limit"].split(","))
    assert members["max-size"] == str(64 * 1024**3) and members["min-size"] == "0"
    assert (age in members) == upload_open, members
    if upload_open:
        assert 86000 < int(members[age]) <= 86400


@pytest.mark.parametrize("v", VERSIONS)
async def test_creation_without_body(api, v):
    resp = await create(api, v, **{"Upload-Length": "10"})
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"].startswith("http://") and "/files/" in resp.headers["Location"]
    assert resp.headers["Upload-Draft-Interop-Version"] == str(v)
    assert resp.headers["Upload-Offset"] == "0"
    assert resp.headers[WIRE[v]["field"]] == WIRE[v]["more"]
    assert "Tus-Resumable" not in resp.headers and "Batch-Id" not in resp.headers
    check_limits(v, resp.headers)
    probe = await head(api, v, urlsplit(resp.headers["Location"]).path)
    assert probe.headers.get("Upload-Length") == ("10" if WIRE[v]["length"] else None)


@pytest.mark.parametrize("v", VERSIONS)
async def test_creation_with_the_whole_body_completes(api, v):
    data = b"exam sheets " * 1000
    resp = await create(api, v, data, complete=True)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Upload-Offset"] == str(len(data))
    assert resp.headers[WIRE[v]["field"]] == WIRE[v]["done"]
    batch = await api.batch(resp.headers["Batch-Id"])
    assert (batch["sha256"], batch["size"], batch["filename"]) == (
        hashlib.sha256(data).hexdigest(),
        len(data),
        "scan.zip",
    )
    listed = await api.get_json(f"/api/batches?upload_id={upload_id_of(resp.headers['Location'])}")
    assert [b["batch_id"] for b in listed["batches"]] == [resp.headers["Batch-Id"]]


@pytest.mark.parametrize("v", VERSIONS)
async def test_partial_creation_then_head_and_patch_resume(api, v):
    data = bytes(range(256)) * 40
    path = await created(api, v, data[:1000], **{"Upload-Length": str(len(data))})
    probe = await head(api, v, path)
    assert probe.status == 204
    assert probe.headers["Upload-Offset"] == "1000"
    assert probe.headers[WIRE[v]["field"]] == WIRE[v]["more"]
    assert probe.headers["Cache-Control"] == "no-store"
    check_limits(v, probe.headers)
    middle = await api.client.patch(path, data=data[1000:6000], headers=patch_headers(api, v, 1000, False))
    assert middle.status == WIRE[v]["append"], await middle.text()
    assert middle.headers["Upload-Offset"] == "6000"
    assert middle.headers[WIRE[v]["field"]] == WIRE[v]["more"]
    last = await api.client.patch(path, data=data[6000:], headers=patch_headers(api, v, 6000, True))
    assert last.status == WIRE[v]["append"], await last.text()
    assert last.headers["Upload-Offset"] == str(len(data))
    assert last.headers[WIRE[v]["field"]] == WIRE[v]["done"]
    batch = await api.batch(last.headers["Batch-Id"])
    assert (batch["sha256"], batch["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    done = await head(api, v, path)
    assert done.headers[WIRE[v]["field"]] == WIRE[v]["done"]
    assert done.headers["Batch-Id"] == last.headers["Batch-Id"]
    check_limits(v, done.headers, upload_open=False)


@pytest.mark.parametrize("v", VERSIONS)
async def test_offset_mismatch_is_a_409_problem(api, v):
    path = await created(api, v, b"hello")
    resp = await api.client.patch(path, data=b"XY", headers=patch_headers(api, v, 2, False))
    assert resp.status == 409
    assert resp.headers["Upload-Offset"] == "5"
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = json.loads(await resp.text())
    if WIRE[v]["typed"]:
        assert body["type"] == PROBLEMS + "mismatching-upload-offset"
        assert (body["expected-offset"], body["provided-offset"]) == (5, 2)
    else:
        assert body["type"] == "about:blank" and "expected-offset" not in body
    assert "does not match" in body["detail"]
    assert (await head(api, v, path)).headers["Upload-Offset"] == "5"


@pytest.mark.parametrize("v", VERSIONS)
async def test_patch_content_type(api, v):
    path = await created(api, v)
    resp = await api.client.patch(
        path,
        data=b"hello",
        headers=patch_headers(api, v, 0, False, **{"Content-Type": "application/offset+octet-stream"}),
    )
    if WIRE[v]["patch_type"]:
        assert resp.status == 415
        assert PARTIAL in await resp.text()
    else:
        assert resp.status == WIRE[v]["append"]


@pytest.mark.parametrize("v", VERSIONS)
async def test_patch_without_the_completeness_field(api, v):
    path = await created(api, v, b"hello")
    resp = await api.client.patch(path, data=b"world", headers=patch_headers(api, v, 5, None))
    absent = WIRE[v]["absent"]
    if absent is None:
        assert resp.status == 400
        assert "Upload-Complete is required" in await resp.text()
        return
    assert resp.status == WIRE[v]["append"], await resp.text()
    assert resp.headers[WIRE[v]["field"]] == WIRE[v]["done" if absent else "more"]
    assert ("Batch-Id" in resp.headers) == absent


@pytest.mark.parametrize("v", VERSIONS)
async def test_creation_needs_the_completeness_field_and_a_valid_kind(api, v):
    hdrs = ietf(api, v, **{"Upload-Metadata": encode_metadata(META)})
    resp = await api.client.post("/files/", data=b"hi", headers=hdrs)
    assert resp.status == 400
    assert WIRE[v]["field"] in await resp.text()
    assert "Tus-Resumable" not in resp.headers
    resp = await create(api, v, b"hi", meta={"upload_type": "pdf"})
    assert resp.status == 400
    assert "Invalid upload_type" in await resp.text()
    resp = await create(api, v, b"hi", meta={"upload_type": "zip_no_qr"})
    assert resp.status == 400
    assert "task_id is required" in await resp.text()
    assert (await create(api, v, b"hi", **{"Upload-Offset": "3"})).status == 400


@pytest.mark.parametrize("v", VERSIONS)
async def test_completed_upload_refuses_appends(api, v):
    resp = await create(api, v, b"hello", complete=True)
    path = urlsplit(resp.headers["Location"]).path
    for body in (b"", b"more"):
        again = await api.client.patch(path, data=body, headers=patch_headers(api, v, 5, True))
        assert again.status == 400
        if not WIRE[v]["typed"]:
            assert "already complete" in await again.text()
            continue
        problem = json.loads(await again.text())
        kind = "inconsistent-upload-length" if body and WIRE[v]["inconsistent"] else "completed-upload"
        assert problem["type"] == PROBLEMS + kind


@pytest.mark.parametrize("v", [6, 7, 8])
async def test_inconsistent_lengths(api, v):
    resp = await create(api, v, b"hello", complete=True, **{"Upload-Length": "10"})
    assert resp.status == 400
    if WIRE[v]["inconsistent"]:
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert json.loads(await resp.text())["type"] == PROBLEMS + "inconsistent-upload-length"
    path = await created(api, v, b"hello", **{"Upload-Length": "10"})
    short = await api.client.patch(path, data=b"wor", headers=patch_headers(api, v, 5, True))
    assert short.status == 400
    assert (await head(api, v, path)).headers["Upload-Offset"] == "5"


@pytest.mark.parametrize("v", VERSIONS)
async def test_completion_without_a_known_length_takes_the_bytes_received(api, v):
    """Upload-Complete: ?1 on a chunked body (no Content-Length): the length is what arrived."""
    data = b"0123456789" * 3000

    async def chunks():
        for i in range(0, len(data), 7000):
            yield data[i : i + 7000]

    path = await created(api, v, data[:10])
    resp = await api.client.patch(path, data=chunks(), headers=patch_headers(api, v, 10, True))
    assert resp.status == WIRE[v]["append"], await resp.text()
    assert resp.headers["Upload-Offset"] == str(10 + len(data))
    batch = await api.batch(resp.headers["Batch-Id"])
    assert (batch["sha256"], batch["size"]) == (hashlib.sha256(data[:10] + data).hexdigest(), 10 + len(data))


@pytest.mark.parametrize("v", VERSIONS)
async def test_delete_cancels(api, v):
    path = await created(api, v, b"hello")
    resp = await api.client.delete(path, headers=ietf(api, v))
    assert resp.status == 204
    assert resp.headers["Upload-Draft-Interop-Version"] == str(v)
    assert (await head(api, v, path)).status == 410
    assert (await api.client.patch(path, data=b"x", headers=patch_headers(api, v, 5, False))).status == 410


@pytest.mark.parametrize("v", VERSIONS)
async def test_head_and_delete_refuse_state_fields_in_early_drafts(api, v):
    path = await created(api, v)
    refused = v <= 6  # drafts -01 to -05
    assert (await head(api, v, path, **{"Upload-Offset": "0"})).status == (400 if refused else 204)
    resp = await api.client.delete(path, headers=ietf(api, v, **state(v, False)))
    assert resp.status == (400 if refused else 204)


@pytest.mark.parametrize("v", VERSIONS)
async def test_auth_and_ownership(api, v):
    path = await created(api, v)
    anonymous = {"Upload-Draft-Interop-Version": str(v)}
    for method in ("POST", "HEAD", "PATCH", "DELETE"):
        target = "/files/" if method == "POST" else path
        resp = await api.client.request(method, target, headers={**anonymous, **state(v, False)})
        assert resp.status == 401, method
        assert "Tus-Resumable" not in resp.headers
    assert (await head(api, v, path, user="bob")).status == 404
    assert (await api.client.delete(path, headers=ietf(api, v, user="bob"))).status == 404
    assert (await head(api, v, path, user="root")).status == 204


@pytest.mark.parametrize("v", VERSIONS)
async def test_options(api, v):
    resp = await api.client.options("/files/", headers={"Upload-Draft-Interop-Version": str(v)})
    assert resp.status == 200
    assert resp.headers.get("Accept-Patch") == WIRE[v]["patch_type"]
    check_limits(v, resp.headers, upload_open=False)


async def test_version_dispatch(api):
    """Unknown versions get a clear 400; Tus-Resumable wins over an interop version."""
    for bad in ("2", "9", "x"):
        resp = await api.client.post("/files/", headers=ietf(api, 8, **{"Upload-Draft-Interop-Version": bad}))
        assert resp.status == 400
        assert "interop versions 3 to 8" in await resp.text()
    both = await api.client.post(
        "/files/",
        headers=ietf(
            api,
            8,
            **{"Tus-Resumable": "1.0.0", "Upload-Length": "5", "Upload-Metadata": encode_metadata(META)},
        ),
    )
    assert both.status == 201 and both.headers["Tus-Resumable"] == "1.0.0"
    untagged = await api.client.post("/files/", headers={**api.auth(), "Upload-Complete": "?1"})
    assert untagged.status == 412  # neither protocol: tus' answer
    path = await created(api, 8)
    assert (await api.client.put(path, data=b"x", headers=ietf(api, 8, **state(8, True)))).status == 405


async def test_cors_lets_a_browser_speak_ietf(api):
    resp = await api.client.options(
        "/files/",
        headers={
            "Origin": "https://exams.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "upload-draft-interop-version, upload-complete",
        },
    )
    allowed = resp.headers["Access-Control-Allow-Headers"]
    assert "Upload-Draft-Interop-Version" in allowed and "Upload-Complete" in allowed
    resp = await create(api, 8, Origin="https://exams.example")
    assert "Upload-Limit" in resp.headers["Access-Control-Expose-Headers"]


# -- 104 Upload Resumption Supported, seen on a raw socket ---------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    return status, {
        k.lower(): val.strip() for k, _, val in (line.partition(":") for line in lines[1:] if line)
    }


async def start_raw_creation(api, v: int, data: bytes, sent: int, http: str = "1.1"):
    """A creation request whose body is sent only up to `sent` bytes."""
    reader, writer = await asyncio.open_connection(api.client.server.host, api.client.server.port)
    hdrs = {
        **ietf(api, v, **state(v, True)),
        "Upload-Metadata": encode_metadata(META),
        "Content-Length": str(len(data)),
        "Host": "omr.test",
    }
    writer.write(
        f"POST /files/ HTTP/{http}\r\n".encode()
        + "".join(f"{k}: {val}\r\n" for k, val in hdrs.items()).encode()
        + b"\r\n"
        + data[:sent]
    )
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize("v", VERSIONS)
async def test_104_arrives_before_the_final_response(api, v):
    data = b"x" * 50_000
    reader, writer = await start_raw_creation(api, v, data, 20_000)
    try:
        status, interim = await read_head(reader)  # the body is not complete yet: only a 1xx can come
        assert status == 104
        assert interim["upload-draft-interop-version"] == str(v)
        assert interim["location"].startswith("http://omr.test/files/")
        assert ("upload-limit" in interim) == (WIRE[v]["age"] is not None)
        writer.write(data[20_000:])
        status, final = await read_head(reader)
        assert status == 201
        assert final["location"] == interim["location"]
        assert final["upload-offset"] == str(len(data))
        assert final["batch-id"]
    finally:
        writer.close()


class ServeLikeServer(TestServer):
    """A test server that, like `omr-tus serve`, lets a handler run on when its client goes
    away (aiohttp's test server cancels it, which loses what the body had delivered)."""

    async def _make_runner(self, handler_cancellation: bool = False, **kwargs):
        return await super()._make_runner(**kwargs)


@pytest.mark.parametrize("v", [3, 6, 8])
async def test_104_location_resumes_a_dropped_creation(aiohttp_client, settings, v):
    """The client loses the connection mid-body: the 104's Location is all it needs. The
    offset is what the server stored of the 30,000 bytes sent (bytes aiohttp had received but
    not yet handed to the handler when the connection broke are not kept: its public API
    drops them), and resuming from it gives the exact file."""
    api = await users_and_tokens(await aiohttp_client(ServeLikeServer(create_app(settings))))
    data = random_bytes = bytes(range(256)) * 400
    reader, writer = await start_raw_creation(api, v, data, 30_000)
    try:
        status, interim = await read_head(reader)
    finally:
        writer.close()
    assert status == 104
    path = urlsplit(interim["location"]).path
    offset = int((await head(api, v, path)).headers["Upload-Offset"])  # HEAD waits for the writer's lock
    assert 0 <= offset <= 30_000
    resp = await api.client.patch(path, data=data[offset:], headers=patch_headers(api, v, offset, True))
    assert resp.status == WIRE[v]["append"], await resp.text()
    batch = await api.batch(resp.headers["Batch-Id"])
    assert batch["sha256"] == hashlib.sha256(random_bytes).hexdigest()


async def test_no_104_for_http_1_0(api):
    reader, writer = await start_raw_creation(api, 8, b"hello", 5, http="1.0")
    try:
        status, final = await read_head(reader)
        assert status == 201 and final["upload-offset"] == "5"
    finally:
        writer.close()


# -- tus-js-client's IETF protocols, in Node against a live server ---------------------------


@pytest.mark.parametrize("protocol,v", [("ietf-draft-03", 5), ("ietf-draft-05", 6)])
async def test_tusjs_ietf_upload_with_resume(node, live, tmp_path, protocol, v):  # noqa: F811
    size = 5 * MiB + 77
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=21)

    result = await run_upload(
        node,
        live,
        path,
        chunkSize=MiB,
        abortAfterBytes=2 * MiB,
        resumeWith="previous",
        metadata=META,
        tusOptions={"protocol": protocol},
    )

    url = result["url"]
    assert result["uploadUrls"] == [url, url], "the second Upload created a new upload instead of resuming"
    assert result["resume"] == {"offset": 2 * MiB}
    assert [(p["upload"], p["offset"], p["status"]) for p in result["patches"]] == [
        (1, 0, 201),
        (1, MiB, 201),
    ] + [(2, i * MiB, 201) for i in range(2, 6)]
    assert result["bytesAccepted"] == size  # every byte sent once
    assert result["requests"]["interop"] == [str(v)], result["requests"]
    assert result["requests"]["tusResumable"] is False
    batch = await live.batch(upload_id_of(url))
    assert batch["batch_id"] == result["batchId"]
    assert (batch["sha256"], batch["size"], batch["filename"]) == (digest, size, "scan.zip")
