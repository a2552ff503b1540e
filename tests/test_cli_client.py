"""The client commands (omr-tus login, upload, batches) as a user runs them: each one a real
subprocess with its own config folder, against a live server on loopback, on SQLite and
PostgreSQL. What the server saw (`live.patches`, the batches' sha256) is the judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import stat
import sys
import zipfile
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from omr_tus import auth
from omr_tus.batches.worker import Worker
from omr_tus.http.keys import FILES, REPO, SETTINGS
from omr_tus.omr.simulate import EASY, simulate_sheet
from omr_tus.omr.template import Template

from .conftest import PASSWORD
from .live import MiB, live, random_file, upload_id_of  # noqa: F401  (live is a fixture)

CLI = [sys.executable, "-m", "omr_tus"]
TIMEOUT = 60  # seconds for any one command; a hang fails instead of stalling the suite
TEMPLATE = json.loads(
    (Path(__file__).resolve().parents[1] / "config" / "templates" / "exam-60-mcq4.json").read_text()
)
TASK = "11600111"


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str


class Cli:
    """Runs `omr-tus` with XDG_CONFIG_HOME in a folder of its own, and checks that no output
    ever shows a token."""

    def __init__(self, live, home: Path, server: str | None = None):
        self.live = live
        self.home = home
        self.server = server or str(live.server.make_url("/")).rstrip("/")
        self.env = {**os.environ, "XDG_CONFIG_HOME": str(home)}

    @property
    def folder(self) -> Path:
        return self.home / "omr-tus"

    def stored_token(self) -> str | None:
        path = self.folder / "credentials.json"
        return json.loads(path.read_text())["token"] if path.exists() else None

    async def start(self, *args: str, stdin: bytes = b"") -> asyncio.subprocess.Process:
        # umask 0: whatever the command creates has only the mode it asks for
        proc = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=lambda: os.umask(0),
        )
        proc.stdin.write(stdin)
        proc.stdin.close()
        return proc

    async def finish(self, proc: asyncio.subprocess.Process) -> Result:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        result = Result(proc.returncode, out.decode(), err.decode())
        for token in (self.live.token, self.stored_token()):
            assert not token or token not in result.out + result.err, "a token was printed"
        return result

    async def __call__(self, *args: str, stdin: bytes = b"") -> Result:
        return await self.finish(await self.start(*args, stdin=stdin))

    async def login(self) -> None:
        result = await self(
            "login", "--server", self.server, "--username", "alice", stdin=PASSWORD.encode() + b"\n"
        )
        assert result.code == 0, result

    def saved_uploads(self) -> list[Path]:
        return sorted((self.folder / "uploads").glob("*.json"))


@pytest.fixture
async def cli(live, tmp_path) -> Cli:
    cli = Cli(live, tmp_path / "config")
    await cli.login()
    return cli


async def get_json(live, path: str, token: str | None = None) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            live.server.make_url(path), headers={"Authorization": f"Bearer {token or live.token}"}
        ) as r:
            assert r.status == 200, (r.status, await r.text())
            return await r.json()


async def batch_with_sha256(live, batch_id: str) -> dict:
    return await live.batch((await get_json(live, f"/api/batches/{batch_id}"))["upload_id"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_login_stores_the_token_readable_only_by_the_user(live, tmp_path):
    cli = Cli(live, tmp_path / "config")
    wrong = await cli("login", "--server", cli.server, "--username", "alice", stdin=b"not the password\n")
    assert wrong.code == 1 and "401: Incorrect username or password" in wrong.err, wrong
    assert not (cli.folder / "credentials.json").exists()

    result = await cli("login", "--server", cli.server + "/", stdin=b"alice\n" + PASSWORD.encode() + b"\n")

    assert result.code == 0, result
    assert f"logged in to {cli.server} as alice" in result.out
    credentials = cli.folder / "credentials.json"
    assert (mode(cli.folder), mode(credentials)) == (0o700, 0o600)  # under umask 0
    stored = json.loads(credentials.read_text())
    assert stored["server"] == cli.server
    assert (await get_json(live, "/api/batches", stored["token"]))["total"] == 0  # the token works


async def test_without_a_login_the_user_is_told_to_log_in(live, tmp_path):
    cli = Cli(live, tmp_path / "config")
    result = await cli("batches", "list", "--server", cli.server)
    assert result.code == 1 and f"run 'omr-tus login --server {cli.server}' first" in result.err, result


async def test_upload_streams_chunks_and_the_batch_has_the_file_sha256(cli, tmp_path):
    size = 40 * MiB + 123
    path = tmp_path / "exam.zip"
    digest = random_file(path, size)

    result = await cli("upload", str(path), "--type", "zip_with_qr", "--chunk-size", "8")

    assert result.code == 0, result
    batch_id = result.out.strip()
    patches = cli.live.patches
    assert [(p.offset, p.length, p.status) for p in patches] == [
        (i * 8 * MiB, min(8 * MiB, size - i * 8 * MiB), 204) for i in range(6)
    ]
    batch = await cli.live.batch(patches[0].upload_id)
    assert (batch["batch_id"], batch["sha256"], batch["size"], batch["filename"]) == (
        batch_id,
        digest,
        size,
        "exam.zip",
    )
    assert "MB/s" in result.err and "100.0%" in result.err and "\r" not in result.err  # stderr is not a TTY
    assert cli.saved_uploads() == []  # nothing left to resume


class GatedProxy:
    """A TCP relay to the live server that lets `budget` bytes through towards it, then holds
    the rest: a client can be killed mid-upload at a known point, however fast loopback is."""

    def __init__(self, port: int, budget: int):
        self.port = port
        self.budget = budget
        self.holding = asyncio.Event()
        self.open = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()

    def cut(self) -> None:
        """Drops every connection (the server sees its PATCH break off) and lets new ones flow."""
        for writer in self.writers:
            writer.transport.abort()
        self.open.set()

    async def _relay(self, client_in, client_out):
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [client_out, server_out]
        await asyncio.gather(
            self._pump(client_in, server_out, upstream=True),
            self._pump(server_in, client_out, upstream=False),
            return_exceptions=True,
        )

    async def _pump(self, reader, writer, upstream: bool):
        with contextlib.closing(writer):
            while data := await reader.read(256 * 1024):
                if upstream:
                    self.budget -= len(data)
                    if self.budget < 0 and not self.open.is_set():
                        self.holding.set()
                        await self.open.wait()
                        if writer.transport.is_closing():
                            return
                writer.write(data)
                await writer.drain()


async def test_killed_upload_resumes_from_the_server_offset(live, tmp_path):
    size = 96 * MiB
    path = tmp_path / "big.zip"
    digest = random_file(path, size, seed=5)
    upload = ("upload", str(path), "--type", "zip_with_qr", "--chunk-size", "8")
    proxy = GatedProxy(live.server.port, budget=20 * MiB)
    async with proxy as proxy_url:
        cli = Cli(live, tmp_path / "config", server=proxy_url)
        await cli.login()
        first = await cli.start(*upload)
        await asyncio.wait_for(proxy.holding.wait(), TIMEOUT)  # two chunks acknowledged, the third under way
        first.kill()  # SIGKILL: no chance to save anything more
        await first.communicate()
        proxy.cut()
        assert [(p.offset, p.new_offset) for p in live.patches[:2]] == [(0, 8 * MiB), (8 * MiB, 16 * MiB)]
        [saved] = cli.saved_uploads()
        assert mode(saved) == 0o600
        url = json.loads(saved.read_text())["url"]
        offset = await live.head_offset(url)
        assert 16 * MiB <= offset < size  # the bytes of the broken third PATCH are kept too
        seen = len(live.patches)

        second = await cli(*upload)

    assert second.code == 0, second
    resumed = live.patches[seen:]
    assert resumed[0].offset == offset  # continued, not restarted
    assert {p.upload_id for p in resumed} == {upload_id_of(url)} and {p.status for p in resumed} == {204}
    assert [p.offset for p in resumed[1:]] == [p.new_offset for p in resumed[:-1]]
    assert resumed[-1].new_offset == size
    batch = await live.batch(upload_id_of(url))
    assert (batch["batch_id"], batch["sha256"]) == (second.out.strip(), digest)
    assert cli.saved_uploads() == []


async def test_a_dropped_connection_is_retried_from_the_server_offset(live, tmp_path):
    size = 40 * MiB
    path = tmp_path / "exam.zip"
    digest = random_file(path, size, seed=6)
    proxy = GatedProxy(live.server.port, budget=20 * MiB)
    async with proxy as proxy_url:
        cli = Cli(live, tmp_path / "config", server=proxy_url)
        await cli.login()
        running = await cli.start("upload", str(path), "--type", "zip_with_qr", "--chunk-size", "8")
        await asyncio.wait_for(proxy.holding.wait(), TIMEOUT)
        proxy.cut()  # the connection drops under the running command
        result = await cli.finish(running)

    assert result.code == 0, result
    assert "retry 1/5 in 1s" in result.err
    offsets = [p.offset for p in live.patches]
    assert offsets[:3] == [0, 8 * MiB, 16 * MiB] and 16 * MiB <= offsets[3] < size  # from the server's offset
    assert [p.offset for p in live.patches[4:]] == [p.new_offset for p in live.patches[3:-1]]
    assert live.patches[-1].new_offset == size
    batch = await live.batch(live.patches[0].upload_id)
    assert (batch["batch_id"], batch["sha256"]) == (result.out.strip(), digest)


async def test_legacy_upload_in_chunks(cli, tmp_path):
    await register_task(cli.live)
    size = 20 * MiB + 5
    path = tmp_path / "scans.zip"
    digest = random_file(path, size, seed=7)

    result = await cli(
        "upload", str(path), "--type", "zip_no_qr", "--task-id", TASK, "--legacy", "--chunk-size", "8"
    )

    assert result.code == 0, result
    assert cli.live.patches == []  # not one tus request
    batch = await batch_with_sha256(cli.live, result.out.strip())
    assert (batch["sha256"], batch["size"], batch["upload_type"], batch["task_id"]) == (
        digest,
        size,
        "zip_no_qr",
        TASK,
    )


async def test_a_refused_upload_shows_the_server_message(cli, tmp_path):
    path = tmp_path / "scans.zip"
    random_file(path, MiB)
    for legacy in ([], ["--legacy"]):
        result = await cli("upload", str(path), "--type", "zip_no_qr", "--task-id", "12", *legacy)
        assert result.code == 1, result
        assert "400: Invalid task_id '12': it must be exactly 8 digits" in result.err
        assert result.out == ""
    assert cli.live.patches == [] and cli.saved_uploads() == []


def exam_zip(path: Path) -> Path:
    """One sheet the simulator scanned, and a file that is not one."""
    sheet = simulate_sheet(Template.parse(TEMPLATE), np.random.default_rng(3), EASY, task_id=TASK)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"scans/{sheet.student_id}.jpg", cv2.imencode(".jpg", sheet.image)[1].tobytes())
        z.writestr("notes.txt", b"not a sheet")
    return path


async def register_task(live) -> None:
    await auth.create_user(live.server.app[REPO], "root", PASSWORD, admin=True)
    login = {"username": "root", "password": PASSWORD}
    async with aiohttp.ClientSession() as s:
        async with s.post(live.server.make_url("/api/auth/login"), data=login) as r:
            token = (await r.json())["access_token"]
        async with s.post(
            live.server.make_url("/api/tasks"),
            headers={"Authorization": f"Bearer {token}"},
            json={"task_id": TASK, "name": "Physics", "template": TEMPLATE},
        ) as r:
            assert r.status == 201, await r.text()


@contextlib.asynccontextmanager
async def worker(live):
    """An OMR worker beside the server, as `omr-tus serve` would start."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        Worker(live.server.app[REPO], live.server.app[SETTINGS], live.server.app[FILES], name="w").run(
            stop, idle=0.05
        )
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def test_wait_and_the_batches_commands(cli, tmp_path):
    await register_task(cli.live)
    async with worker(cli.live):
        done = await cli("upload", str(exam_zip(tmp_path / "exam.zip")), "--type", "zip_with_qr", "--wait")
        random_file(tmp_path / "broken.zip", 1000)
        broken = await cli("upload", str(tmp_path / "broken.zip"), "--type", "zip_with_qr", "--wait")

    assert done.code == 0, done
    batch_id = done.out.strip()
    assert "1/1 (0 failed) completed" in done.err
    assert broken.code == 1 and f"batch {broken.out.strip()} failed: " in broken.err, broken

    listed = await cli("batches", "list")
    assert listed.code == 0, listed
    header, *rows = listed.out.splitlines()
    assert header.split() == [
        "BATCH",
        "STATUS",
        "TYPE",
        "TASK",
        "SHEETS",
        "FAILED",
        "SIZE",
        "CREATED",
        "FILENAME",
    ]
    row = next(r.split() for r in rows if r.startswith(batch_id))
    assert row[1:6] + row[-1:] == ["completed", "zip_with_qr", "-", "1/1", "0", "exam.zip"]
    assert (await cli("batches", "list", "--status", "uploaded")).out == "no batches\n"

    batch = await batch_with_sha256(cli.live, batch_id)
    shown = await cli("batches", "show", batch_id)
    assert shown.code == 0, shown
    fields = dict(line.split(None, 1) for line in shown.out.splitlines() if not line.startswith("skipped"))
    assert (fields["sha256:"], fields["status:"], fields["total_sheets:"], fields["task_id:"]) == (
        batch["sha256"],
        "completed",
        "1",
        "-",
    )
    assert "skipped: notes.txt: " in shown.out

    results = await cli("batches", "results", batch_id)
    api_results = await get_json(cli.live, f"/api/batches/{batch_id}/results")
    assert results.code == 0 and json.loads(results.out) == api_results
    assert len(api_results["sheets"]) == 1 and api_results["sheets"][0]["answers"]
    as_csv = await cli("batches", "results", batch_id, "--csv")
    async with aiohttp.ClientSession() as s:
        async with s.get(
            cli.live.server.make_url(f"/api/batches/{batch_id}/results.csv"), headers=cli.live.headers
        ) as r:
            assert as_csv.code == 0 and as_csv.out == await r.text()
    assert as_csv.out.startswith("source,page,task_id,student_id,status,score,")

    unknown = await cli("batches", "show", "nope")
    assert unknown.code == 1 and "404: Batch nope not found" in unknown.err

    deleted = await cli("batches", "delete", batch_id)
    assert deleted.code == 0 and f"deleted batch {batch_id} (exam.zip, " in deleted.out, deleted
    assert (await cli("batches", "show", batch_id)).code == 1
    again = await cli("batches", "delete", batch_id)
    assert again.code == 1 and f"404: Batch {batch_id} not found" in again.err
