"""The README's shell blocks run as written: each ```sh block runs in bash against a live
`omr-tus serve`, except a block right after `<!-- not run: reason -->`. The only change is the
port: the blocks say 127.0.0.1:8000, the server here listens on a free one. The blocks run in a
folder that holds what the README says they need (exam.zip, a `.venv` like the checkout's) with
PASSWORD set to the admin's password and the other *_PASSWORD variables the blocks name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from omr_tus.config import DEFAULTS_FILE

from .conftest import missing_part

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^(?P<indent> *)```sh\n(?P<body>.*?)^(?P=indent)```$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]*\S) -->\s*$")
PASSWORDS = {
    "PASSWORD": "readme admin password",
    "ALICE_PASSWORD": "alice's first password",
    "BOSS_PASSWORD": "the boss's password",
    "NEW_PASSWORD": "alice's new password",
}


def shell_blocks(text: str) -> list[tuple[str, str | None]]:
    """Every ```sh block with the reason it is not run (None: it runs)."""
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        body = "\n".join(line.removeprefix(match["indent"]) for line in match["body"].splitlines())
        blocks.append((body, reason["reason"] if reason else None))
    return blocks


def test_shell_blocks_are_found_and_every_skip_has_a_reason():
    blocks = shell_blocks(README.read_text())
    assert len(blocks) == README.read_text().count("```sh")
    assert [body for body, reason in blocks if reason is None], "no README block runs"
    assert all(reason is None or len(reason) > 10 for _, reason in blocks)
    # the blocks not run here still talk to the port the server listens on by default
    port = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))["port"]
    assert {int(p) for body, _ in blocks for p in re.findall(r"127\.0\.0\.1:(\d+)", body)} == {port}


def call(method: str, url: str, data: dict | None = None, token: str | None = None) -> tuple[int, bytes]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, body, headers, method=method), timeout=10
        ) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def login(base: str, username: str, password: str) -> str | None:
    status, body = call("POST", base + "/api/auth/login", {"username": username, "password": password})
    return json.loads(body)["access_token"] if status == 200 else None


@pytest.mark.slow
def test_readme_shell_blocks_run_against_a_live_server(tmp_path, unused_tcp_port):
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            missing_part(f"{tool} is missing: the README's shell blocks use it")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        **PASSWORDS,
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
        "OMR_TUS_DATA_DIR": str(tmp_path / "data"),
        "OMR_TUS_STORE_DIR": str(tmp_path / "store"),
        "OMR_TUS_WORKERS": "0",
        "OMR_TUS_ADMIN_PASSWORD": PASSWORDS["PASSWORD"],
    }
    env.pop("OMR_TUS_DATABASE_URL", None)
    work = tmp_path / "work"
    work.mkdir()
    (work / "exam.zip").write_bytes(os.urandom(300_000))
    (work / ".venv").symlink_to(sys.prefix)  # the blocks name the checkout's .venv
    base = f"http://127.0.0.1:{unused_tcp_port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "omr_tus", "serve", "--port", str(unused_tcp_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(base):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        ran = 0
        for body, reason in shell_blocks(README.read_text()):
            if reason is not None:
                continue
            script = body.replace("127.0.0.1:8000", base.removeprefix("http://"))
            proc = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, (
                f"README block failed:\n{body}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
            ran += 1
        # what the blocks did is there: the upload's batch, the users with their last passwords
        token = login(base, "admin", PASSWORDS["PASSWORD"])
        status, body = call("GET", base + "/api/batches", token=token)
        assert status == 200 and [b["size"] for b in json.loads(body)["batches"]] == [
            (work / "exam.zip").stat().st_size
        ]
        assert login(base, "alice", PASSWORDS["NEW_PASSWORD"]) and not login(
            base, "alice", PASSWORDS["ALICE_PASSWORD"]
        )
        assert login(base, "boss", PASSWORDS["BOSS_PASSWORD"])
        assert ran >= 2
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert server.returncode == 0, out.decode()[-2000:]


def _ready(base: str) -> bool:
    try:
        return call("GET", base + "/readyz")[0] == 200
    except OSError:
        return False
