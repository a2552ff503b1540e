"""schemathesis against the legacy and batch routes of /openapi.json: no input gives a 5xx."""

import asyncio
import sys

import aiohttp
from pathlib import Path

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.http.keys import REPO

from .conftest import PASSWORD

ST = Path(sys.executable).with_name("st")


async def test_no_server_errors(aiohttp_server, settings, tmp_path):
    server = await aiohttp_server(create_app(settings))
    await auth.create_user(server.app[REPO], "alice", PASSWORD)
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/api/auth/login"),
                                data={"username": "alice", "password": PASSWORD}) as resp:
            token = (await resp.json())["access_token"]
    proc = await asyncio.create_subprocess_exec(
        str(ST), "run", str(server.make_url("/openapi.json")), "-H", f"Authorization: Bearer {token}",
        "--checks", "not_a_server_error", "--include-path-regex", "^/api/batches", "--max-examples", "30",
        "--seed", "20261124", "--no-color", "--request-timeout", "30", "--workers", "1",
        "--report-dir", str(tmp_path / "schemathesis"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Tested: 8" in text, text[-3000:]  # upload-chunk, upload, batches, one batch, progress, results(.csv), reprocess
