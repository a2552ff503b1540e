"""Start, probe and stop the three servers under test, and sample their memory."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
NODE_DIR = BENCH / "node"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(
    method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 10.0
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Server:
    """One server process. `kind` is "ours", "raw" or "node"."""

    # One admin password per run: a database reused by a later server start keeps its admin.
    password = secrets.token_urlsafe(16)

    def __init__(
        self,
        kind: str,
        label: str,
        workdir: Path,
        db_url: str | None = None,
        log_level: str | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.kind, self.label, self.db_url, self.log_level = kind, label, db_url, log_level
        self.settings = settings or {}  # ours: more OMR_TUS_* variables
        self.workdir = workdir
        self.store_dir = Path("/dev/shm") / f"omr-bench-{os.getpid()}-{secrets.token_hex(4)}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None

    # -- lifecycle ------------------------------------------------------------
    def command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if self.kind == "ours":
            data_dir = self.workdir / "ours-data"
            env.update(
                OMR_TUS_HOST="127.0.0.1",
                OMR_TUS_PORT=str(self.port),
                OMR_TUS_DATA_DIR=str(data_dir),
                OMR_TUS_STORE_DIR=str(self.store_dir),
                OMR_TUS_ADMIN_PASSWORD=self.password,
                OMR_TUS_WORKERS="0",
            )  # the upload server alone; bench/omr.py measures the OMR workers
            if self.db_url:
                env["OMR_TUS_DATABASE_URL"] = self.db_url
            if self.log_level:
                env["OMR_TUS_LOG_LEVEL"] = self.log_level
            env.update(self.settings)
            return [str(VENV_BIN / "omr-tus"), "serve"], env
        if self.kind == "raw":
            return [
                sys.executable,
                str(BENCH / "raw_aiohttp.py"),
                "--port",
                str(self.port),
                "--dir",
                str(self.store_dir),
            ], env
        if self.kind == "node":
            return ["node", str(NODE_DIR / "server.mjs"), str(self.port), str(self.store_dir)], env
        raise ValueError(self.kind)

    def start(self) -> Server:
        cmd, env = self.command()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.label}-{self.port}.log"
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT
        probe = "/healthz" if self.kind == "ours" else ("/" if self.kind == "raw" else "/files")
        method = "OPTIONS" if self.kind == "node" else "GET"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited at start; see {self.log_path}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            try:
                status, _, _ = _http(method, self.base + probe, timeout=2)
                if status < 500:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} not ready after {READY_TIMEOUT}s; see {self.log_path}")
            time.sleep(0.1)
        if self.kind == "ours":
            self.token = self._login()
        return self

    def _login(self) -> str:
        body = urllib.parse.urlencode({"username": "admin", "password": self.password}).encode()
        for _ in range(50):
            status, _, data = _http(
                "POST",
                self.base + "/api/auth/login",
                body,
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
            if status == 200:
                return json.loads(data)["access_token"]
            time.sleep(0.1)  # the admin is created in on_startup, right before serving
        raise RuntimeError(f"login failed: {status} {data[:200]!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.kind != "node" else signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.store_dir, ignore_errors=True)
        if self.kind == "ours":
            shutil.rmtree(self.workdir / "ours-data" / "files", ignore_errors=True)

    # -- what the client needs --------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def headers(self) -> dict[str, str]:
        return {"Tus-Resumable": "1.0.0", **self.auth_headers()}

    def wait_settled(self, timeout: float = 120.0) -> None:
        """Ours moves completed uploads off the RAM disk in the background: let that finish
        so it does not overlap the next measurement."""
        if self.kind != "ours":
            return
        deadline = time.monotonic() + timeout
        while any(self.store_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stored_file(self, upload_id: str) -> Path:
        if self.kind == "ours":
            for path in (self.store_dir / upload_id, self.workdir / "ours-data" / "files" / upload_id):
                if path.exists():
                    return path
        return self.store_dir / upload_id

    def batch_sha256(
        self, upload_id: str | None = None, batch_id: str | None = None, timeout: float = 30.0
    ) -> str | None:
        """Ours: the sha256 the server recorded for a batch, found by its id (GET /api/batches/{id})
        or by its upload's id. It is filled in by the archive pass a moment after completion: poll."""
        path = f"/api/batches/{batch_id}" if batch_id else f"/api/batches?upload_id={upload_id}"
        deadline = time.monotonic() + timeout
        while True:
            status, _, data = _http("GET", self.base + path, headers=self.auth_headers())
            if status == 200:
                body = json.loads(data)
                row = body if batch_id else (body["batches"] or [{}])[0]
                if row.get("sha256"):
                    return row["sha256"]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


class RssSampler:
    """Samples the RSS of a process (and its children) every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.02, max_seconds: float = 900.0):
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.max_seconds = max_seconds
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def idle(self, seconds: float = 0.3) -> int:
        """Median RSS over a short quiet period."""
        values = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            values.append(self.rss())
            time.sleep(self.interval)
        values.sort()
        return values[len(values) // 2]

    def _run(self) -> None:
        end = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                self.peak = max(self.peak, self.rss())
                self.samples += 1
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def cpu_seconds(self) -> float:
        t = self.proc.cpu_times()
        total = t.user + t.system
        for child in self.proc.children(recursive=True):
            try:
                ct = child.cpu_times()
                total += ct.user + ct.system
            except psutil.NoSuchProcess:
                pass
        return total


def create_pg_database() -> tuple[str, str]:
    name = f"bench_{secrets.token_hex(4)}"
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        timeout=60,
    )
    return name, f"postgresql+asyncpg://root@127.0.0.1:5432/{name}"


def drop_pg_database(name: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-d",
            "test",
            "-q",
            "-c",
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        ],
        timeout=60,
    )


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    import aiohttp

    out["python"] = sys.version.split()[0]
    out["aiohttp"] = aiohttp.__version__
    try:
        out["omr-tus"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        out["omr-tus"] = "?"
    try:
        out["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        out["node"] = "missing"
    for pkg in ("server", "file-store"):
        path = NODE_DIR / "node_modules" / "@tus" / pkg / "package.json"
        out[f"@tus/{pkg}"] = json.loads(path.read_text())["version"] if path.exists() else "missing"
    try:
        out["postgresql"] = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "root", "-d", "test", "-Atc", "SHOW server_version"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        out["postgresql"] = "?"
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    out["kernel"] = os.uname().release
    return out


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
    }


class BusyMeter:
    """CPU the rest of the machine used while a case ran (other users of the 2 cores)."""

    def __init__(self) -> None:
        self.start = self._busy()
        self.pg_start = self._postgres()

    @staticmethod
    def _postgres() -> float:
        """CPU time of all PostgreSQL processes (the server's database work)."""
        total = 0.0
        for proc in psutil.process_iter(["name", "cpu_times"]):
            t = proc.info["cpu_times"]
            if proc.info["name"] and proc.info["name"].startswith("postgres") and t:
                # children_*: backends that already exited (a connection opened and closed during the case)
                total += t.user + t.system + t.children_user + t.children_system
        return total

    def postgres_seconds(self) -> float:
        return self._postgres() - self.pg_start

    @staticmethod
    def _busy() -> tuple[float, float]:
        t = psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return sum(t) - idle, time.monotonic()

    def seconds(self) -> float:
        return self._busy()[0] - self.start[0]


def wait_quiet(max_wait: float = 30.0, threshold: float = 15.0) -> float:
    """Wait (at most max_wait s) until the machine is nearly idle; returns the last CPU %."""
    deadline = time.monotonic() + max_wait
    while True:
        pct = psutil.cpu_percent(interval=0.5)
        if pct <= threshold or time.monotonic() > deadline:
            return pct
