"""The server killed (SIGKILL, by the test-only OMR_TUS_CRASH_AT hook of omr_tus/crashpoints.py)
at each named step of completion and archiving, then restarted: once with the RAM disk kept (only
the process died) and once wiped (a reboot). Afterwards every batch's size and sha256 match the
bytes it holds, or the batch says the file was lost; nothing is lost when only the process died;
with durable_before_ack, nothing acknowledged is lost even when the RAM disk is wiped."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import stat

import aiohttp
import pytest

from omr_tus.crashpoints import ENV, POINTS
from omr_tus.uploads.model import LOST

from .helpers import eventually
from .test_shutdown import ServerProcess

SIZE = 300_000
# (durable_before_ack, point): each point where that mode passes
CASES = [(False, p) for p in POINTS] + [(True, p) for p in POINTS if p != "recorded"]
# What a wiped RAM disk loses: the file of a completion that reached no durable copy.
LOST_WHEN_WIPED = {(False, "completed"), (False, "copied")}
GONE_WHEN_WIPED = {(True, "copied"), (True, "renamed")}  # not yet complete: the client uploads again


async def _complete(server: ServerProcess, url: str, data: bytes) -> str | None:
    """The PATCH that completes the upload: its Batch-Id if the server answered, None if the
    process died first (the upload was not acknowledged)."""
    try:
        async with aiohttp.ClientSession() as s:
            async with s.patch(
                url,
                data=data,
                headers={
                    **server.headers,
                    "Upload-Offset": "0",
                    "Content-Type": "application/offset+octet-stream",
                },
                timeout=aiohttp.ClientTimeout(total=20),
            ) as r:
                assert r.status == 204, await r.text()
                return r.headers["Batch-Id"]
    except (TimeoutError, aiohttp.ClientConnectionError):
        return None


async def _settled(server: ServerProcess, url: str) -> dict | None:
    """The upload's batch once recovery has settled it (sha256 known, or failed); None once the
    upload holds fewer bytes than its length (no batch is coming: the client must resend)."""
    upload_id = url.rsplit("/", 1)[-1]
    async with aiohttp.ClientSession() as s:

        async def settled() -> tuple[bool, dict | None]:
            async with s.get(
                f"{server.base}/api/batches", params={"upload_id": upload_id}, headers=server.headers
            ) as r:
                batches = (await r.json())["batches"]
            if batches:
                return bool(batches[0]["sha256"] or batches[0]["status"] == "failed"), batches[0]
            return int((await server.head(url))["Upload-Offset"]) < SIZE, None

        return (await eventually(settled, lambda found: found[0], what=f"upload {upload_id} to settle"))[1]


@pytest.mark.parametrize("wait,point", CASES, ids=[f"{'wait' if w else 'background'}-{p}" for w, p in CASES])
async def test_sigkill_at_each_step_of_completion(tmp_path, wait, point):
    """The RAM disk kept and wiped, side by side (two servers), to halve the test's time."""
    (tmp_path / "kept").mkdir()
    (tmp_path / "wiped").mkdir()
    await asyncio.gather(
        _crash_and_restart(tmp_path / "kept", wait, point, wiped=False),
        _crash_and_restart(tmp_path / "wiped", wait, point, wiped=True),
    )


async def _crash_and_restart(tmp_path, wait: bool, point: str, wiped: bool) -> None:
    server = ServerProcess(tmp_path)
    server.env.update(
        {ENV: point, "OMR_TUS_DURABLE_BEFORE_ACK": str(wait).lower(), "OMR_TUS_JANITOR_INTERVAL": "0.2"}
    )
    await server.start()
    data = os.urandom(SIZE)
    url = await server.create(SIZE)
    upload_id = url.rsplit("/", 1)[-1]
    acknowledged = await _complete(server, url, data)
    assert await asyncio.to_thread(server.proc.wait, 20) == -signal.SIGKILL  # it died at the point
    store, files = tmp_path / "store", tmp_path / "data" / "files"
    if wiped:  # a reboot empties the RAM disk
        shutil.rmtree(store)
        store.mkdir()

    del server.env[ENV]
    restarted = await server.restarted()
    try:
        batch = await _settled(restarted, url)
        head = await restarted.head(url)
        if wiped and (wait, point) in GONE_WHEN_WIPED:
            assert acknowledged is None and batch is None  # never acknowledged, nothing claimed:
            assert head["Upload-Offset"] == "0"  # the client sends it again
            batch_id = await restarted.resume(url, 0, data)
            batch, head = await _settled(restarted, url), await restarted.head(url)
            assert batch["batch_id"] == batch_id
        assert batch is not None, "a completed upload has no batch after the restart"
        if wiped and (wait, point) in LOST_WHEN_WIPED:
            assert not wait and batch["status"] == "failed" and batch["error"] == LOST
            assert batch["sha256"] is None and batch["size"] == 0
            assert head["Upload-Offset"] == "0"  # what the server really holds
            assert not (files / upload_id).exists()
        else:  # nothing lost when only the process died, or when the durable copy was made
            assert batch["sha256"] == hashlib.sha256(data).hexdigest() and batch["size"] == SIZE
            assert head["Upload-Offset"] == str(SIZE)
            durable = files / upload_id
            assert hashlib.sha256(durable.read_bytes()).hexdigest() == batch["sha256"]
            assert stat.S_IMODE(durable.stat().st_mode) == 0o600
        if acknowledged is not None:
            assert acknowledged == batch["batch_id"]
        # no orphan: no RAM-disk copy of a settled upload, no half-made durable copy
        await eventually(lambda: not (store / upload_id).exists(), what="the RAM-disk copy to be deleted")
        await eventually(lambda: not list(files.glob("*.part")), what="no .part file left")
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.proc.wait, 20)
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]
