"""Chunked request bodies (Transfer-Encoding: chunked) arrive whole, through real clients.

aiohttp's readchunk() answers (b"", True) where an HTTP chunk ends and more may follow; a
reader that took that for the end of the body acknowledged a cut-short PATCH, and completed
an IETF creation (Upload-Complete: ?1) as a short file. Here four real clients — aiohttp's
client with an async generator body, `curl -T -` fed through a pipe, a raw socket that
writes each chunk's size line in two pieces, its data and its closing CRLF separately, and
tus-js-client in Node with a stream source — send chunked bodies with chunk sizes from 1 byte
to 4 MiB on tus PATCH (and creation-with-upload), IETF creation (and PATCH) with
Upload-Complete: ?1 (interop versions 3 to 8) and legacy chunks (multipart inside a chunked
request). Every
other run goes through a relay that forwards the client's bytes in separate writes, cut
right before each CRLF and at random places, as a proxy or the network may; a third of the
runs have a CPU burner process beside the server. Every run checks the sha256 of the stored
file (downloaded back) and, at the end, of every batch.

Broken bodies fail the request and keep exactly what was stored: a client gone mid-chunk,
malformed chunk framing, a body that stops (ended by the idle timeout), and, for legacy forms,
too many fields, too many field bytes and too long a preamble.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import random
import subprocess
import sys
from collections.abc import Callable
from unittest import mock

import aiohttp
import pytest
from aiohttp import StreamReader, web
from aiohttp.test_utils import TestServer

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.errors import ServiceError
from omr_tus.http import body
from omr_tus.http.keys import REPO, STORE

from .conftest import PASSWORD, make_settings, missing_part
from .helpers import encode_metadata, eventually
from .live import upload_id_of
from .services import Nginx, nginx_binary
from .test_client_tusjs import JS, node  # noqa: F401  (node is a fixture)
from .test_ietf import ServeLikeServer  # handlers run on when their client goes away, as in `omr-tus serve`

KiB, MiB = 1024, 1024 * 1024
RUN_TIMEOUT = 60  # seconds for one upload, far above what any run here needs
META = {"upload_type": "zip_with_qr", "filename": "scan.zip"}
IETF_VERSIONS = [3, 4, 5, 6, 7, 8]  # tests/test_ietf.py's interop versions
# Upload-Complete: ?1 for each interop version (3 says it the other way round).
COMPLETE = {3: ("Upload-Incomplete", "?0"), **{v: ("Upload-Complete", "?1") for v in IETF_VERSIONS[1:]}}


# -- the server, a re-segmenting relay and a CPU burner ------------------------------------------


@dataclasses.dataclass
class Target:
    server: TestServer
    token: str
    session: aiohttp.ClientSession
    relay_port: int
    bodies: list[str | None]  # the Transfer-Encoding of every request with a body, as the server saw it

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def port(self, relayed: bool) -> int:
        return self.relay_port if relayed else self.server.port

    def url(self, path: str, relayed: bool = False) -> str:
        return f"http://127.0.0.1:{self.port(relayed)}{path}"

    async def request(self, method: str, path: str, **kwargs) -> aiohttp.ClientResponse:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return await self.session.request(method, self.url(path), headers=headers, **kwargs)


async def start_target(settings) -> tuple[Target, Callable]:
    app = create_app(settings)
    bodies: list[str | None] = []

    @web.middleware
    async def record(request: web.Request, handler):
        if request.body_exists and request.path != "/api/auth/login":
            bodies.append(request.headers.get("Transfer-Encoding"))
        return await handler(request)

    app.middlewares.insert(0, record)
    server = ServeLikeServer(app, host="127.0.0.1")
    await server.start_server()
    await auth.create_user(server.app[REPO], "alice", PASSWORD)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RUN_TIMEOUT))
    async with session.post(
        f"http://127.0.0.1:{server.port}/api/auth/login", data={"username": "alice", "password": PASSWORD}
    ) as resp:
        assert resp.status == 200, await resp.text()
        token = (await resp.json())["access_token"]
    relay = await asyncio.start_server(lambda r, w: _relay(r, w, server.port), "127.0.0.1", 0)

    async def close() -> None:
        relay.close()
        await session.close()
        await server.close()

    return Target(server, token, session, relay.sockets[0].getsockname()[1], bodies), close


@pytest.fixture
async def target(tmp_path, database_url):
    target, close = await start_target(make_settings(tmp_path, database_url))
    yield target
    await close()


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, port: int) -> None:
    """Forwards a connection to the server; the client's bytes go on in separate writes,
    cut before every CRLF and at random places, each given time to arrive on its own."""
    server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(port)

    async def upstream() -> None:
        while data := await client_r.read(256 * KiB):
            for piece in _cuts(data, rng):
                server_w.write(piece)
                await server_w.drain()
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        server_w.write_eof()

    async def downstream() -> None:
        while data := await server_r.read(64 * KiB):
            client_w.write(data)
            await client_w.drain()
        client_w.close()

    with contextlib.suppress(ConnectionError, OSError):
        await asyncio.gather(upstream(), downstream())
    client_w.close()
    server_w.close()


def _cuts(data: bytes, rng: random.Random) -> list[bytes]:
    edges = {0, len(data)}
    at = data.find(b"\r\n")
    while at >= 0:
        edges.add(at)
        at = data.find(b"\r\n", at + 1)
    edges.update(rng.randrange(len(data)) for _ in range(max(1, len(data) // (32 * KiB))))
    points = sorted(edges)
    return [data[a:b] for a, b in zip(points, points[1:])]


@contextlib.contextmanager
def cpu_burner(on: bool, seconds: float = 30):
    """A process that spins one core for at most `seconds` (stopped sooner when the block ends)."""
    if not on:
        yield
        return
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.monotonic() + %f\nwhile time.monotonic() < end: pass" % seconds,
        ]
    )
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


# -- bodies and the clients that send them -------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    text: str


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes, cycled."""
    out, at, i = [], 0, 0
    while at < len(data):
        out.append(data[at : at + sizes[i % len(sizes)]])
        at += sizes[i % len(sizes)]
        i += 1
    return out


async def send_aiohttp(
    target: Target, method: str, path: str, headers: dict[str, str], chunks: list[bytes], relayed: bool
) -> Reply:
    async def gen():
        for chunk in chunks:
            yield chunk

    async with target.session.request(
        method, target.url(path, relayed), data=gen(), headers={**target.auth, **headers}
    ) as resp:
        return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.text())


async def send_curl(
    target: Target, method: str, path: str, headers: dict[str, str], chunks: list[bytes], relayed: bool
) -> Reply:
    """`curl -T -` with the body fed through its stdin, a write per piece. curl makes a chunk of
    what the pipe holds when it reads, so the first 16 pieces and every piece of 4 KiB or more
    are given a moment alone (the first chunks are as small as the pieces: 1 byte and up)."""
    args = [
        "curl",
        "-sS",
        "--http1.1",
        "-X",
        method,
        "-T",
        "-",
        "-D",
        "-",
        "-o",
        "/dev/stderr",
        "-H",
        "Expect:",
        "-m",
        str(RUN_TIMEOUT),
    ]
    for name, value in {**target.auth, **headers}.items():
        args += ["-H", f"{name}: {value}"]
    proc = await asyncio.create_subprocess_exec(
        *args,
        target.url(path, relayed),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def feed():
        for n, chunk in enumerate(chunks):
            proc.stdin.write(chunk)
            await proc.stdin.drain()
            if n < 16 or len(chunk) >= 4 * KiB:
                await asyncio.sleep(0.002)
        proc.stdin.close()

    _, (out, err) = await asyncio.gather(feed(), proc.communicate())
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    status, hdrs = _last_head(out.decode("latin-1"))
    return Reply(status, hdrs, err.decode(errors="replace"))


def _last_head(raw: str) -> tuple[int, dict[str, str]]:
    """The final response's status and headers from a dump with any 1xx heads before it."""
    heads = [_head(h) for h in raw.split("\r\n\r\n") if h.startswith("HTTP/")]
    return [(status, hdrs) for status, hdrs in heads if status >= 200][-1]


def _head(raw: str) -> tuple[int, dict[str, str]]:
    lines = raw.strip().split("\r\n")
    return int(lines[0].split(" ")[1]), {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }


async def send_raw(
    target: Target, method: str, path: str, headers: dict[str, str], chunks: list[bytes], relayed: bool
) -> Reply:
    """A raw socket that writes each chunk's size line in two pieces (sometimes with a chunk
    extension), its data and its closing CRLF separately, each given time to arrive alone,
    and ends with a trailer field now and then."""
    rng = random.Random(len(chunks))
    reader, writer = await open_chunked(target, method, path, headers, target.port(relayed))
    try:
        for chunk in chunks:
            size = f"{len(chunk):x}" + (";piece=1" if rng.random() < 0.1 else "") + "\r\n"
            cut = rng.randrange(1, len(size))
            for part in (size[:cut].encode(), size[cut:].encode(), chunk, b"\r\n"):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        writer.write(b"0\r\nX-Trailer: 1\r\n\r\n" if rng.random() < 0.3 else b"0\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(read_reply(reader), RUN_TIMEOUT)
    finally:
        writer.close()


async def open_chunked(
    target: Target, method: str, path: str, headers: dict[str, str], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection with a request head sent that announces a chunked body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = {"Host": "omr.test", "Transfer-Encoding": "chunked", **target.auth, **headers}
    writer.write(
        f"{method} {path} HTTP/1.1\r\n".encode()
        + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode()
        + b"\r\n"
    )
    return reader, writer


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        status, hdrs = _head(raw.decode("latin-1"))
        if status >= 200:
            break
    text = await reader.readexactly(int(hdrs.get("content-length", "0")))
    return Reply(status, hdrs, text.decode(errors="replace"))


SENDERS = {"aiohttp": send_aiohttp, "curl": send_curl, "raw": send_raw}


# -- the protocols ---------------------------------------------------------------------------------


async def stored_sha256(target: Target, upload_id: str) -> str:
    """The sha256 of the completed upload as the server hands it back."""
    resp = await target.request("GET", f"/files/{upload_id}")
    assert resp.status == 200, (resp.status, await resp.text())
    digest = hashlib.sha256()
    async for block in resp.content.iter_chunked(MiB):
        digest.update(block)
    return digest.hexdigest()


async def tus_upload(
    target: Target, send, data: bytes, sizes: list[int], relayed: bool, run: int
) -> tuple[str, str]:
    """One tus PATCH with a chunked body, or (every third run) creation-with-upload."""
    octet = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    create = {
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": encode_metadata(META),
    }
    if run % 3 == 0:
        reply = await send(target, "POST", "/files/", {**create, **octet}, pieces(data, sizes), relayed)
        assert reply.status == 201, (reply.status, reply.text)
        upload_id = upload_id_of(reply.headers["location"])
    else:
        resp = await target.request("POST", "/files/", headers=create)
        assert resp.status == 201, await resp.text()
        upload_id = upload_id_of(resp.headers["Location"])
        reply = await send(
            target,
            "PATCH",
            f"/files/{upload_id}",
            {**octet, "Upload-Offset": "0"},
            pieces(data, sizes),
            relayed,
        )
        assert reply.status == 204, (reply.status, reply.text)
    assert reply.headers["upload-offset"] == str(len(data)), "the body was cut short and acknowledged"
    return upload_id, reply.headers["batch-id"]


async def ietf_upload(
    target: Target, send, data: bytes, sizes: list[int], relayed: bool, run: int
) -> tuple[str, str]:
    """The whole file in one request that says it is complete (Upload-Complete: ?1): the
    creation itself, or (each version in turn) a PATCH after an empty creation."""
    v = IETF_VERSIONS[run % len(IETF_VERSIONS)]
    field, complete = COMPLETE[v]
    hdrs = {"Upload-Draft-Interop-Version": str(v), field: complete}
    if (run // len(IETF_VERSIONS)) % 2 == 0:
        reply = await send(
            target,
            "POST",
            "/files/",
            {**hdrs, "Upload-Metadata": encode_metadata(META), "Content-Type": "application/octet-stream"},
            pieces(data, sizes),
            relayed,
        )
        assert reply.status == 201, (v, reply.status, reply.text)
        upload_id = upload_id_of(reply.headers["location"])
    else:
        incomplete = {field: "?1" if v == 3 else "?0"}
        resp = await target.request(
            "POST", "/files/", headers={**hdrs, **incomplete, "Upload-Metadata": encode_metadata(META)}
        )
        assert resp.status == 201, (v, resp.status, await resp.text())
        upload_id = upload_id_of(resp.headers["Location"])
        reply = await send(
            target,
            "PATCH",
            f"/files/{upload_id}",
            {**hdrs, "Upload-Offset": "0", "Content-Type": "application/partial-upload"},
            pieces(data, sizes),
            relayed,
        )
        assert reply.status == (201 if v < 7 else 204), (v, reply.status, reply.text)
    assert reply.headers["upload-offset"] == str(len(data)), (
        f"interop {v}: a short file was accepted as complete"
    )
    return upload_id, reply.headers["batch-id"]


def form(fields: dict[str, str], chunk: bytes, chunk_first: bool) -> tuple[str, bytes]:
    boundary = "----chunkedForm" + hashlib.sha1(chunk[:64]).hexdigest()[:12]
    parts = [(name, value.encode(), None) for name, value in fields.items()]
    file_part = ("chunk", chunk, "blob")
    parts = [file_part, *parts] if chunk_first else [*parts, file_part]
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
            + (b"Content-Type: application/octet-stream\r\n" if filename else b"")
            + b"\r\n"
            + value
            + b"\r\n"
        )
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


async def legacy_upload(
    target: Target, send, data: bytes, sizes: list[int], relayed: bool, run: int
) -> tuple[str, str]:
    """The legacy chunk API: the file in 1 to 3 chunks, each a multipart form sent chunked;
    every other run puts the file part before the fields (it is spooled, then placed)."""
    count = 1 + run % 3 if len(data) >= 3 else 1
    size = -(-len(data) // count)
    upload_id, receipt = None, {}
    for index in range(count):
        fields = {"chunk_index": str(index), "total_chunks": str(count)}
        if index == 0:
            fields.update(upload_type="zip_with_qr", filename="scan.zip")
        else:
            fields["upload_id"] = upload_id
        content_type, payload = form(
            fields, data[index * size : (index + 1) * size], chunk_first=run % 2 == 1
        )
        reply = await send(
            target,
            "POST",
            "/api/batches/upload-chunk",
            {"Content-Type": content_type},
            pieces(payload, sizes),
            relayed,
        )
        assert reply.status == 200, (reply.status, reply.text)
        receipt = json.loads(reply.text)
        upload_id = receipt["upload_id"]
    assert receipt["is_complete"], receipt
    return upload_id, receipt["batch_id"]


PROTOCOLS = {"tus": tus_upload, "ietf": ietf_upload, "legacy": legacy_upload}


# -- the matrix ------------------------------------------------------------------------------------

# (piece sizes, body length): from 1-byte chunks on small bodies to 4 MiB chunks on 9 MiB ones.
SMALL = [
    ([1], 900),
    ([2], 1500),
    ([5], 3000),
    ([1, 7, 3], 2500),
    ([16], 12 * KiB),
    ([255], 40 * KiB),
    ([1000], 90 * KiB),
    ([4096], 150 * KiB),
    ([65535], 300 * KiB),
    ([65536], 330 * KiB),
    ([65537], 350 * KiB),
    ([1, 65536, 17, 300 * KiB, 2], 700 * KiB),
]
LARGE = [([MiB], 2 * MiB + 12345), ([4 * MiB], 9 * MiB + 7)]


@dataclasses.dataclass
class Run:
    protocol: str
    sizes: list[int]
    length: int
    relayed: bool
    loaded: bool
    number: int

    def __str__(self) -> str:
        return (
            f"run {self.number}: {self.protocol}, pieces {self.sizes[:5]}, {self.length} bytes"
            f"{', relayed' if self.relayed else ''}{', CPU load' if self.loaded else ''}"
        )


def matrix(protocols: list[str], large: dict[str, list[int]]) -> list[Run]:
    """Every protocol with every small size; `large` names which of LARGE each protocol gets.
    Every other run is relayed; the middle third runs under CPU load."""
    cases = [(p, sizes, length) for p in protocols for sizes, length in SMALL]
    cases += [(p, *LARGE[i]) for p, picks in large.items() for i in picks]
    third = len(cases) / 3
    return [
        Run(p, sizes, length, relayed=n % 2 == 1, loaded=third <= n < 2 * third, number=n)
        for n, (p, sizes, length) in enumerate(cases)
    ]


async def run_matrix(target: Target, send, runs: list[Run]) -> int:
    rng = random.Random(len(runs))
    batches: dict[str, str] = {}
    loaded = [r for r in runs if r.loaded]
    for group in ([r for r in runs if r not in loaded], loaded):
        with cpu_burner(bool(group) and group[0].loaded):
            for run in group:
                data = rng.randbytes(run.length)
                expected = hashlib.sha256(data).hexdigest()
                try:
                    upload_id, batch_id = await asyncio.wait_for(
                        PROTOCOLS[run.protocol](target, send, data, run.sizes, run.relayed, run.number),
                        RUN_TIMEOUT,
                    )
                    assert await stored_sha256(target, upload_id) == expected, "the stored file differs"
                    assert target.bodies and set(target.bodies) == {"chunked"}, target.bodies
                    target.bodies.clear()
                except BaseException as exc:
                    raise AssertionError(f"{run}: {exc!r}") from exc
                batches[batch_id] = expected
    await check_batches(target, batches)
    return len(runs)


async def check_batches(target: Target, expected: dict[str, str]) -> None:
    """Each batch's sha256 (recorded when its file reached durable storage) is its file's."""

    async def batch(batch_id: str) -> dict:
        return await (await target.request("GET", f"/api/batches/{batch_id}")).json()

    for batch_id, digest in expected.items():
        recorded = await eventually(functools.partial(batch, batch_id), lambda batch: batch.get("sha256"))
        assert recorded["sha256"] == digest, recorded


@pytest.mark.parametrize("client", SENDERS)
async def test_chunked_bodies_arrive_whole(target, client):
    """aiohttp, curl and a raw socket: 12 chunk sizes on each of tus, IETF and legacy, plus
    multi-MiB bodies in 1 and 4 MiB chunks (each client a different protocol's)."""
    large = {"aiohttp": {"tus": [0, 1]}, "curl": {"ietf": [0, 1]}, "raw": {"legacy": [0, 1]}}[client]
    runs = matrix(list(PROTOCOLS), large)
    assert await run_matrix(target, SENDERS[client], runs) == len(runs) == 38


async def test_chunked_bodies_through_nginx(target, tmp_path):
    """deploy/nginx.conf in front (request buffering off, HTTP/1.1 to the node), as in
    production: nginx passes a chunked body on chunked, in the pieces it receives. aiohttp and
    the raw socket, every other small size on tus and legacy, every run through nginx. (Not
    IETF creation: nginx 1.22 takes the 104 interim response for the final one.)"""
    if nginx_binary() is None:
        missing_part("nginx is not installed (Debian package nginx-light)")
    nginx = await asyncio.to_thread(Nginx(tmp_path / "nginx", [f"127.0.0.1:{target.server.port}"]).start)
    try:
        behind = dataclasses.replace(target, relay_port=nginx.port)
        runs = [
            dataclasses.replace(run, relayed=True)
            for run in matrix(["tus", "legacy"], {})
            if run.number % 2 == 0
        ]
        for client in ("aiohttp", "raw"):
            assert await run_matrix(behind, SENDERS[client], runs) == 12
    finally:
        await asyncio.to_thread(nginx.stop)


# -- tus-js-client -----------------------------------------------------------------------------------

# (piece sizes, file length, tus-js-client chunkSize (bytes per PATCH), protocol)
TUSJS = [
    ([1], 1200, MiB, "tus"),
    ([3, 1, 8], 5000, 2000, "tus"),
    ([100], 60 * KiB, 50 * KiB, "tus"),
    ([4096], 200 * KiB, MiB, "tus"),
    ([65536, 7], 600 * KiB, 256 * KiB, "tus"),
    ([65537], 300 * KiB, MiB, "tus"),
    ([4 * MiB], 5 * MiB + 3, 8 * MiB, "tus"),
    ([1000], 80 * KiB, 64 * KiB, "ietf-draft-05"),
    ([2, 50000], 150 * KiB, MiB, "ietf-draft-03"),
]


async def test_tus_js_client_stream_source(target, node, tmp_path):
    """tus-js-client with a stream source, its bodies sent chunked in pieces of 1 byte to 4 MiB;
    every other run relayed, the last third under CPU load."""
    rng = random.Random(7)
    batches = {}
    for n, (sizes, length, chunk_size, protocol) in enumerate(TUSJS):
        data = rng.randbytes(length)
        path = tmp_path / f"scan{n}.zip"
        path.write_bytes(data)
        options = {
            "source": "stream",
            "chunkSize": chunk_size,
            "bodyPieces": sizes,
            "metadata": META,
            "tusOptions": {} if protocol == "tus" else {"protocol": protocol},
            "timeoutMs": RUN_TIMEOUT * 1000,
        }
        with cpu_burner(n >= 2 * len(TUSJS) / 3):
            proc = await asyncio.create_subprocess_exec(
                node,
                str(JS / "upload.mjs"),
                target.url("/files/", relayed=n % 2 == 1),
                target.token,
                str(path),
                json.dumps(options),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT + 10)
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert proc.returncode == 0 and result["ok"], (n, result.get("error"), err.decode()[-2000:])
        # each PATCH took its whole body: nothing was acknowledged short and sent again
        assert [p["newOffset"] - p["offset"] for p in result["patches"]] == [
            min(chunk_size, length - offset) for offset in range(0, length, chunk_size)
        ], (n, result["patches"])
        upload_id = upload_id_of(result["url"])
        assert await stored_sha256(target, upload_id) == hashlib.sha256(data).hexdigest(), n
        assert target.bodies and set(target.bodies) == {"chunked"}, (n, target.bodies)
        target.bodies.clear()
        batches[result["batchId"]] = hashlib.sha256(data).hexdigest()
    await check_batches(target, batches)


# -- the reader itself, on a real aiohttp StreamReader ------------------------------------------------


def stream_reader() -> StreamReader:
    protocol = mock.Mock(connected=True)
    return StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


async def test_chunk_ends_after_their_data_was_read_do_not_end_the_body():
    """The case that cut bodies short: a chunk's end arrives after its data was handed out,
    so readchunk() answers (b"", True) before the next chunk."""
    content = stream_reader()
    content.begin_http_chunk_receiving()
    got = []

    async def read():
        async for block in body.blocks(content):
            got.append(bytes(block))

    reader = asyncio.get_running_loop().create_task(read())
    for piece in (b"a", b"bb", b"", b"ccc"):
        if piece:
            content.feed_data(piece)
        await asyncio.sleep(0)  # the reader takes the data before the chunk's end is known
        content.end_http_chunk_receiving()
        await asyncio.sleep(0)
    content.feed_eof()
    await asyncio.wait_for(reader, 5)
    assert b"".join(got) == b"abbccc"


async def test_a_body_read_again_after_its_end_ends_at_once():
    """An ended body (aiohttp's EmptyStreamReader for a request without one) answers
    (b"", True) to every later read: the reader must not take that for a chunk boundary
    and wait for ever (a second read of a PATCH without a body once hung the server)."""
    from aiohttp.streams import EmptyStreamReader

    content = EmptyStreamReader()
    for _ in range(2):
        assert await asyncio.wait_for(_all(body.blocks(content)), 5) == []


async def _all(blocks) -> list[bytes]:
    return [b async for b in blocks]


async def test_a_malformed_body_is_a_400_and_a_stalled_one_a_408():
    content = stream_reader()
    content.feed_data(b"kept")
    content.set_exception(web.RequestPayloadError("bad chunk size"))
    with pytest.raises(ServiceError, match="malformed") as info:
        [b async for b in body.blocks(content)]
    assert info.value.status == 400
    with pytest.raises(ServiceError, match="nothing arrived for 0.05 s") as info:
        [b async for b in body.blocks(stream_reader(), idle=0.05)]
    assert info.value.status == 408


# -- broken bodies -------------------------------------------------------------------------------------


@pytest.fixture
async def quick_target(tmp_path, database_url):
    """A server that stops a silent writer, or a form silent for, 0.5 s (the idle timeout)."""
    target, close = await start_target(make_settings(tmp_path, database_url, idle_timeout=0.5))
    yield target
    await close()


@dataclasses.dataclass
class Broken:
    interim: dict[str, str] | None  # the 104's headers, for an IETF creation
    reply: Reply | None  # the final reply, if one came


async def send_broken(
    target: Target,
    method: str,
    path: str,
    headers: dict[str, str],
    data: bytes,
    breakage: str,
    upload_id: str | None = None,
) -> Broken:
    """Sends `data` up to 5000 in 1000-byte chunks, waits until the server stored them (when the
    upload is known: given, or from an IETF creation's 104), then breaks the body: the client goes
    away 400 bytes into the next chunk, or sends a chunk size that is not hex, or sends nothing
    more (and waits for the answer)."""
    reader, writer = await open_chunked(target, method, path, headers, target.server.port)
    try:
        for chunk in pieces(data[:5000], [1000]):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        interim = None
        if "Upload-Draft-Interop-Version" in headers:
            status, interim = _head(
                (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
            )
            assert status == 104, status
            upload_id = upload_id_of(interim["location"])
        await (stored_at_least(target, upload_id, 5000) if upload_id else asyncio.sleep(0.3))
        if breakage == "disconnect":
            writer.write(b"3e8\r\n" + data[5000:5400])  # 1000 bytes announced, 400 sent
            await writer.drain()
            await asyncio.sleep(0.2)
            return Broken(interim, None)
        if breakage == "malformed":
            writer.write(b"zz\r\n" + b"y" * 100 + b"\r\n")
            await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            return Broken(interim, await asyncio.wait_for(read_reply(reader), 15))
        return Broken(interim, None)
    finally:
        writer.close()


async def stored_at_least(target: Target, upload_id: str, size: int) -> None:
    path = target.server.app[STORE].path(upload_id)
    await eventually(
        lambda: path.exists() and path.stat().st_size >= size,
        interval=0.02,
        what=f"{size} bytes of upload {upload_id} on the store",
    )


async def stored_offset(target: Target, upload_id: str, data: bytes) -> int:
    """The offset a HEAD reports (it waits for the writer's lock), checked against the store's bytes."""
    resp = await target.request("HEAD", f"/files/{upload_id}", headers={"Tus-Resumable": "1.0.0"})
    assert resp.status == 200, resp.status
    offset = int(resp.headers["Upload-Offset"])
    assert "Batch-Id" not in resp.headers
    assert target.server.app[STORE].path(upload_id).read_bytes() == data[:offset]
    return offset


@pytest.mark.parametrize("breakage", ["disconnect", "malformed", "stall"])
@pytest.mark.parametrize("protocol", ["tus", "ietf"])
async def test_a_broken_chunked_body_fails_and_keeps_what_was_stored(quick_target, protocol, breakage):
    """The request fails; the upload is not complete (an IETF creation that said
    Upload-Complete: ?1 included); its offset is exactly what was stored, at least the chunks
    sent before the break; resuming from it gives the exact file."""
    target = quick_target
    data = random.Random(3).randbytes(20_000)
    if protocol == "tus":
        resp = await target.request(
            "POST",
            "/files/",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": encode_metadata(META),
            },
        )
        upload_id = upload_id_of(resp.headers["Location"])
        broken = await send_broken(
            target,
            "PATCH",
            f"/files/{upload_id}",
            {
                "Tus-Resumable": "1.0.0",
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
            },
            data,
            breakage,
            upload_id,
        )
    else:
        broken = await send_broken(
            target,
            "POST",
            "/files/",
            {
                "Upload-Draft-Interop-Version": "8",
                "Upload-Complete": "?1",
                "Upload-Metadata": encode_metadata(META),
            },
            data,
            breakage,
        )
        upload_id = upload_id_of(broken.interim["location"])
    reply = broken.reply
    assert reply is None or 400 <= reply.status < 500, reply
    assert reply is not None or breakage == "disconnect", "a malformed or stalled body must be answered"
    offset = await stored_offset(target, upload_id, data)
    assert 5000 <= offset <= (5400 if breakage == "disconnect" else 5000)
    if protocol == "tus":
        resp = await target.request(
            "PATCH",
            f"/files/{upload_id}",
            data=data[offset:],
            headers={
                "Tus-Resumable": "1.0.0",
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            },
        )
    else:
        resp = await target.request(
            "PATCH",
            f"/files/{upload_id}",
            data=data[offset:],
            headers={
                "Upload-Draft-Interop-Version": "8",
                "Upload-Complete": "?1",
                "Upload-Offset": str(offset),
                "Content-Type": "application/partial-upload",
            },
        )
    assert resp.status == 204, await resp.text()
    assert await stored_sha256(target, upload_id) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("breakage", ["disconnect", "malformed", "stall"])
async def test_a_broken_legacy_chunk_fails_and_its_retry_completes(quick_target, breakage):
    """Chunk 1 of 2 breaks inside its data: the request fails, the chunk is not counted, and
    sending it again completes the exact file."""
    target = quick_target
    data = random.Random(4).randbytes(30_000)
    content_type, first = form(
        {"chunk_index": "0", "total_chunks": "2", "upload_type": "zip_with_qr", "filename": "scan.zip"},
        data[:15_000],
        chunk_first=False,
    )
    reply = await send_aiohttp(
        target, "POST", "/api/batches/upload-chunk", {"Content-Type": content_type}, [first], relayed=False
    )
    upload_id = json.loads(reply.text)["upload_id"]
    content_type, second = form(
        {"chunk_index": "1", "total_chunks": "2", "upload_id": upload_id}, data[15_000:], chunk_first=False
    )
    assert (
        second.index(data[15_000:15_100]) < 1000
    )  # so the break (after 5,000 bytes) is inside the chunk's data
    broken = await send_broken(
        target, "POST", "/api/batches/upload-chunk", {"Content-Type": content_type}, second, breakage
    )
    assert broken.reply is None or 400 <= broken.reply.status < 500, broken.reply
    assert broken.reply is not None or breakage == "disconnect", (
        "a malformed or stalled body must be answered"
    )
    reply = await send_aiohttp(
        target, "POST", "/api/batches/upload-chunk", {"Content-Type": content_type}, [second], relayed=False
    )
    receipt = json.loads(reply.text)
    assert receipt["is_complete"] and receipt["chunks_received"] == 2, receipt
    assert await stored_sha256(target, upload_id) == hashlib.sha256(data).hexdigest()
    await check_batches(target, {receipt["batch_id"]: hashlib.sha256(data).hexdigest()})


def legacy_form(
    fields: int, field_size: int = 10, preamble: bytes = b"", end: bool = True
) -> tuple[str, bytes]:
    """A legacy chunk-0 form with `fields` extra fields of `field_size` bytes, its file part
    last; without `end` it stops after the fields (a body that never ends)."""
    named = {
        "chunk_index": "0",
        "total_chunks": "1",
        "upload_type": "zip_with_qr",
        "filename": "scan.zip",
        **{f"extra{i}": "v" * field_size for i in range(fields)},
    }
    content_type, payload = form(named, b"PK\x03\x04 file", chunk_first=False)
    if not end:
        payload = payload[: payload.index(b'name="chunk"')]
    return content_type, preamble + payload


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize(
    "case,status,message",
    [
        ("fields", 400, "Too many form fields: send at most 32"),
        ("field bytes", 413, "The form fields hold more than 65536 bytes"),
        ("preamble", 400, "more than 65536 bytes before the first boundary"),
        ("accepted", 200, None),
    ],
)
async def test_legacy_form_fields_are_bounded(target, chunked, case, status, message):
    content_type, payload = {
        "fields": lambda: legacy_form(fields=30),  # 34 with the four the chunk needs
        "field bytes": lambda: legacy_form(fields=20, field_size=4000),
        "preamble": lambda: legacy_form(fields=0, preamble=b"p" * (64 * KiB + 1) + b"\r\n"),
        "accepted": lambda: legacy_form(fields=26, field_size=2000),  # 30 fields, 52 kB
    }[case]()
    if chunked:
        reply = await send_aiohttp(
            target,
            "POST",
            "/api/batches/upload-chunk",
            {"Content-Type": content_type},
            pieces(payload, [4096]),
            relayed=False,
        )
    else:
        async with target.session.post(
            target.url("/api/batches/upload-chunk"),
            data=payload,
            headers={**target.auth, "Content-Type": content_type},
        ) as resp:
            reply = Reply(resp.status, {}, await resp.text())
    assert reply.status == status, reply
    if message:
        assert message in json.loads(reply.text)["detail"]


@pytest.mark.parametrize("where", ["after the fields", "inside a spooled chunk"])
async def test_a_legacy_body_that_never_ends_is_stopped_by_the_idle_timeout(quick_target, where):
    """No upload lock watches a form's fields or a chunk spooled before them: the form reader's
    own idle timeout (the server's idle_timeout, 0.5 s here) ends the request with a 408."""
    target = quick_target
    if where == "after the fields":
        content_type, payload = legacy_form(fields=2, end=False)
    else:
        content_type, payload = form({"chunk_index": "0"}, b"x" * 10_000, chunk_first=True)
        payload = payload[: payload.index(b"x" * 10_000) + 5000]
    reader, writer = await open_chunked(
        target, "POST", "/api/batches/upload-chunk", {"Content-Type": content_type}, target.server.port
    )
    try:
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(read_reply(reader), 10)  # then nothing more is sent
    finally:
        writer.close()
    assert reply.status == 408, reply
    assert "nothing arrived for 0.5 s" in json.loads(reply.text)["detail"]


async def test_empty_bodies_in_a_row_are_answered(api):
    """aiohttp shares one empty-body reader between requests, and it reports the end of the
    body only once: a second empty PATCH waited for ever (the event loop spinning)."""
    path = await api.create(10)
    for _ in range(3):
        resp = await asyncio.wait_for(api.patch(path, 0, b""), 10)
        assert resp.status == 204
