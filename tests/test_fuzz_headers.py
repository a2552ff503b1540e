"""Property-based fuzzing (hypothesis) of the upload headers and the legacy form fields against a
real server: whatever a client sends, the answer is a 2xx or a 4xx with a message, never a 5xx,
and never a request left hanging (every request has a 10 s deadline)."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.http.keys import REPO

from .conftest import PASSWORD, make_settings

TIMEOUT = 10
# What a header value can carry on the wire: visible ASCII, spaces and tabs, and latin-1 bytes.
HEADER_TEXT = st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n\x00", exclude_categories=("Cc",))
    | st.sampled_from(" \t"),
    max_size=60,
)
NUMBERISH = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " 1", "1 ", "+1", "0x10", "1e3", "\xb9", "00", "-0", "9" * 40]),
    HEADER_TEXT,
)
METADATA = st.one_of(
    HEADER_TEXT,
    st.lists(
        st.tuples(
            st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=12),
            st.one_of(st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()), HEADER_TEXT),
        ),
        max_size=5,
    ).map(lambda pairs: ",".join(f"{k} {v}".strip() for k, v in pairs)),
)
CONCAT = st.one_of(
    HEADER_TEXT,
    st.sampled_from(["partial", "final;", "final; /files/x", "final;/files/../x"]),
    st.lists(st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=40), max_size=3).map(
        lambda urls: "final;" + " ".join(urls)
    ),
)
CHECKSUM = st.one_of(
    HEADER_TEXT,
    st.tuples(st.sampled_from(["sha1", "md5", "sha256", "crc32", "SHA1", ""]), HEADER_TEXT).map(" ".join),
)


class ThreadedServer:
    """omr-tus on a loop of its own, in a thread: the fuzzing test is plain synchronous code."""

    def __init__(self, app_settings):
        self.settings = app_settings
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        asyncio.set_event_loop(self.loop)

        async def start():
            app = create_app(self.settings)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
            await auth.create_user(app[REPO], "alice", PASSWORD)

        self.loop.run_until_complete(start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def start(self) -> ThreadedServer:
        self.thread.start()
        assert self.ready.wait(30)
        status, body = self.request(
            "POST",
            "/api/auth/login",
            body=f"username=alice&password={PASSWORD}".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.token = json.loads(body)["access_token"]
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def tus(self, **extra: str) -> dict[str, str]:
        return {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {self.token}", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    server = ThreadedServer(make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}")).start()
    yield server
    server.stop()


def no_server_error(status: int, body: bytes, what) -> None:
    assert status < 500, (status, body[:300], what)
    if status >= 400:
        assert body.strip(), (status, what)  # every refusal says why


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(
    length=st.one_of(st.none(), NUMBERISH),
    defer=st.one_of(st.none(), NUMBERISH),
    metadata=st.one_of(st.none(), METADATA),
    concat=st.one_of(st.none(), CONCAT),
    body=st.binary(max_size=64),
)
def test_creation_headers(server, length, defer, metadata, concat, body):
    headers = server.tus(
        **{
            k: v
            for k, v in {
                "Upload-Length": length,
                "Upload-Defer-Length": defer,
                "Upload-Metadata": metadata,
                "Upload-Concat": concat,
            }.items()
            if v is not None
        }
    )
    if body:
        headers["Content-Type"] = "application/offset+octet-stream"
    status, answer = server.request("POST", "/files/", body, headers)
    no_server_error(status, answer, headers)


@pytest.fixture(scope="module")
def upload_path(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    conn.request(
        "POST",
        "/files/",
        headers=server.tus(**{"Upload-Length": "1000000", "Upload-Metadata": "upload_type emlwX3dpdGhfcXI="}),
    )
    response = conn.getresponse()
    assert response.status == 201
    location = response.getheader("Location")
    conn.close()
    return "/files/" + location.rsplit("/", 1)[1]


@FUZZ
@given(
    offset=st.one_of(st.none(), NUMBERISH),
    length=st.one_of(st.none(), NUMBERISH),
    checksum=st.one_of(st.none(), CHECKSUM),
    content_type=st.one_of(st.just("application/offset+octet-stream"), HEADER_TEXT),
    body=st.binary(max_size=64),
)
def test_patch_headers(server, upload_path, offset, length, checksum, content_type, body):
    headers = server.tus(
        **{
            k: v
            for k, v in {
                "Upload-Offset": offset,
                "Upload-Length": length,
                "Upload-Checksum": checksum,
                "Content-Type": content_type,
            }.items()
            if v is not None
        }
    )
    status, answer = server.request("PATCH", upload_path, body, headers)
    no_server_error(status, answer, headers)
    status, answer = server.request("HEAD", upload_path, headers=server.tus())
    assert status == 200  # the upload is still there, whatever was sent


FIELD = st.one_of(
    NUMBERISH, st.text(max_size=40), st.sampled_from(["true", "false", "zip_with_qr", "images"])
)


@FUZZ
@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "chunk_index",
                "total_chunks",
                "filename",
                "upload_type",
                "task_id",
                "upload_id",
                "is_final_chunk",
            ]
        ),
        FIELD,
    ),
    chunk=st.one_of(st.none(), st.binary(max_size=256)),
    chunk_first=st.booleans(),
)
def test_legacy_form_fields(server, fields, chunk, chunk_first):
    boundary = uuid.uuid4().hex
    parts = [(k, None, v.encode("utf-8", "surrogatepass")) for k, v in fields.items()]
    if chunk is not None:
        file_part = ("chunk", "blob", chunk)
        parts = [file_part, *parts] if chunk_first else [*parts, file_part]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
            + (
                f'; filename="{filename}"\r\nContent-Type: application/octet-stream'.encode()
                if filename
                else b""
            )
            + b"\r\n\r\n"
            + value
            + b"\r\n"
            for name, filename, value in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {
        "Authorization": f"Bearer {server.token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    status, answer = server.request("POST", "/api/batches/upload-chunk", body, headers)
    no_server_error(status, answer, fields)
    if status >= 400:
        assert b'"detail"' in answer
