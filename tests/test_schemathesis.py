"""schemathesis against every operation of /openapi.json (tus, legacy, batches, tasks, sheets,
operations, the page's files), as an admin, who may call them all: no input gives a 5xx."""

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.http.keys import REPO

from .conftest import PASSWORD

ST = Path(sys.executable).with_name("st")
ROOT = Path(__file__).resolve().parents[1]


async def test_no_server_errors(aiohttp_server, settings, tmp_path):
    server = await aiohttp_server(create_app(settings))
    await auth.create_user(server.app[REPO], "root", PASSWORD, admin=True)
    target = await auth.create_user(server.app[REPO], "target", PASSWORD)  # what PATCH /api/users changes
    async with aiohttp.ClientSession() as session:
        async with session.post(
            server.make_url("/api/auth/login"), data={"username": "root", "password": PASSWORD}
        ) as resp:
            token = (await resp.json())["access_token"]
    proc = await asyncio.create_subprocess_exec(
        str(ST),
        "run",
        str(server.make_url("/openapi.json")),
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--seed",
        "20261124",
        "--no-color",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--report-dir",
        str(tmp_path / "schemathesis"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            "OMR_TUS_SCHEMATHESIS_USER_ID": str(target),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Tested: 41" in text, text[-3000:]  # every operation of the document (41 by its count)
