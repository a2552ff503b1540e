"""SIGTERM while uploads are in flight: a PATCH that finishes within the grace period is answered,
one whose client stays silent is stopped when it ends, and every byte received is kept."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from .helpers import KIND, encode_metadata, eventually, recorded_batch

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
PASSWORD = "shutdown test password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "OMR_TUS_PORT": str(self.port),
            "OMR_TUS_HOST": "127.0.0.1",
            "OMR_TUS_DATA_DIR": str(tmp / "data"),
            "OMR_TUS_STORE_DIR": str(tmp / "store"),
            "OMR_TUS_WORKERS": "0",
            "OMR_TUS_SHUTDOWN_TIMEOUT": "2",
            "OMR_TUS_ADMIN_PASSWORD": PASSWORD,
            "OMR_TUS_DATABASE_URL": "",
        }
        self.log = tmp / "server.log"

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omr_tus", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        async with aiohttp.ClientSession() as s:

            async def health() -> int:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
                async with s.get(self.base + "/healthz") as r:
                    return r.status

            await eventually(
                health, lambda status: status == 200, timeout=15, retry_on=(aiohttp.ClientError,)
            )
            async with s.post(
                self.base + "/api/auth/login", data={"username": "admin", "password": PASSWORD}
            ) as r:
                self.headers = {**TUS, "Authorization": f"Bearer {(await r.json())['access_token']}"}

    async def restarted(self) -> ServerProcess:
        """A new process on the same port, with the same settings and data (a supervisor's restart)."""
        again = ServerProcess.__new__(ServerProcess)
        again.__dict__.update(self.__dict__)
        await again.start()
        return again

    async def resume(self, url: str, offset: int, body: bytes) -> str:
        """The client's resumed PATCH from `offset`, to the end; its Batch-Id."""
        async with aiohttp.ClientSession() as s:
            async with s.patch(
                url,
                data=body,
                headers={
                    **self.headers,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            ) as r:
                assert r.status == 204, await r.text()
                return r.headers["Batch-Id"]

    async def create(self, length: int) -> str:
        async with aiohttp.ClientSession() as s:
            async with s.post(
                self.base + "/files/",
                headers={
                    **self.headers,
                    "Upload-Length": str(length),
                    "Upload-Metadata": encode_metadata(KIND),
                },
            ) as r:
                assert r.status == 201
                return urllib.parse.urljoin(self.base + "/files/", r.headers["Location"])

    async def sha256(self, batch_id: str) -> str:
        return (await recorded_batch(self.base, self.headers, batch_id))["sha256"]

    async def head(self, url: str) -> dict:
        async with aiohttp.ClientSession() as s:
            async with s.head(url, headers=self.headers) as r:
                assert r.status == 200
                return dict(r.headers)


async def start_patch(server: ServerProcess, url: str, length: int, first: bytes):
    """A PATCH whose body is sent by hand: `first` now, the rest when the test says."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    path = urllib.parse.urlsplit(url).path
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {
            **server.headers,
            "Host": f"127.0.0.1:{server.port}",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(length),
        }.items()
    )
    writer.write(f"PATCH {path} HTTP/1.1\r\n{head}\r\n".encode() + first)
    await writer.drain()
    return reader, writer


async def test_sigterm_lets_patches_finish_and_keeps_the_bytes_of_the_others(tmp_path):
    server = ServerProcess(tmp_path)
    await server.start()
    silent_url = await server.create(10 * MiB)
    finishing_url = await server.create(4 * MiB)
    silent = await start_patch(server, silent_url, 10 * MiB, b"a" * (3 * MiB))
    finishing = await start_patch(server, finishing_url, 4 * MiB, b"b" * MiB)
    await asyncio.sleep(1.0)  # both bodies are being read

    server.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    finishing[1].write(b"b" * (3 * MiB))  # this one completes during the grace period
    await finishing[1].drain()
    status_line = await asyncio.wait_for(finishing[0].readline(), 10)
    assert status_line.startswith(b"HTTP/1.1 204"), status_line  # it completed during the grace period
    assert await asyncio.to_thread(server.proc.wait, 20) == 0  # the silent one is stopped at the deadline
    for _, writer in (silent, finishing):
        writer.close()

    restarted = await server.restarted()
    try:
        # what reached the server before the deadline is kept (bytes still in the kernel's
        # socket buffer when the connection closed were never received, so never acknowledged)
        kept = int((await restarted.head(silent_url))["Upload-Offset"])
        assert 2 * MiB <= kept <= 3 * MiB
        await restarted.resume(silent_url, kept, b"a" * (10 * MiB - kept))  # the client resumes from there
        async with aiohttp.ClientSession() as s:
            async with s.get(restarted.base + "/api/batches", headers=restarted.headers) as r:
                batches = {b["size"]: b for b in (await r.json())["batches"]}
        assert set(batches) == {4 * MiB, 10 * MiB}
        expected = {
            4 * MiB: hashlib.sha256(b"b" * 4 * MiB).hexdigest(),
            10 * MiB: hashlib.sha256(b"a" * 10 * MiB).hexdigest(),
        }
        for size, batch in batches.items():
            assert await restarted.sha256(batch["batch_id"]) == expected[size]
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log, log[-3000:]
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.proc.wait, 20)


@pytest.mark.parametrize("store", ["local", "s3"])
async def test_sigkill_mid_patch_then_restart_and_the_client_resumes(request, tmp_path, store):
    """No grace at all: the process dies mid-body. After a restart HEAD reports what was saved
    (never more than was received), and the upload resumes to the right sha256."""
    server = ServerProcess(tmp_path)
    if store == "s3":
        overrides = request.getfixturevalue("seaweedfs").settings(prefix=f"kill{os.getpid()}/")
        server.env.update(
            {f"OMR_TUS_{k.upper()}": v for k, v in overrides.items()}, OMR_TUS_S3_PART_SIZE=str(5 * MiB)
        )
    await server.start()
    data = os.urandom(12 * MiB)
    url = await server.create(len(data))
    reader, writer = await start_patch(server, url, len(data), data[: 6 * MiB])
    for i in range(30):  # the client keeps sending, slowly; the offset is saved about once a second
        writer.write(data[6 * MiB + i * 32768 : 6 * MiB + (i + 1) * 32768])
        await writer.drain()
        await asyncio.sleep(0.05)
    server.proc.kill()
    await asyncio.to_thread(server.proc.wait, 20)
    writer.close()

    restarted = await server.restarted()
    try:
        kept = int((await restarted.head(url))["Upload-Offset"])
        assert 5 * MiB <= kept <= 6 * MiB + 30 * 32768  # saved, and never more than was received
        batch_id = await restarted.resume(url, kept, data[kept:])
        assert await restarted.sha256(batch_id) == hashlib.sha256(data).hexdigest()
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.proc.wait, 20)
