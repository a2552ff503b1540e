"""A cluster on loopback, as deploy/nginx.conf describes one: API nodes (`omr-tus serve`) and
workers (`omr-tus worker`) as real processes on one PostgreSQL database and one store (S3 or
a shared directory), behind nginx in round robin. Used by tests/test_cluster.py and
bench/cluster.py."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .services import Nginx, free_ports

ADMIN_PASSWORD = "cluster admin password"


class Process:
    """One omr-tus process with its own data dir and log."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], workdir: Path, port: int | None = None
    ):
        self.name, self.args, self.env, self.port = name, args, env, port
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omr_tus", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    def __init__(
        self,
        workdir: Path,
        database_url: str,
        store: dict[str, str],
        nodes: int = 2,
        workers: int = 2,
        extra_env: dict[str, str] | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("OMR_TUS_")}
        base.update({f"OMR_TUS_{k.upper()}": v for k, v in store.items()})
        base.update(
            OMR_TUS_DATABASE_URL=database_url,
            OMR_TUS_SECRET_KEY="cluster-" + secrets.token_hex(24),
            OMR_TUS_ADMIN_PASSWORD=ADMIN_PASSWORD,
            OMR_TUS_WORKERS="0",
            OMR_TUS_HOST="127.0.0.1",
            OMR_TUS_TRUST_PROXY_HEADERS="true",  # behind nginx, as deploy/nginx.conf says
            **(extra_env or {}),
        )

        def data_dir(name: str) -> dict[str, str]:  # a node's own, unless the store shares one
            return {} if "data_dir" in store else {"OMR_TUS_DATA_DIR": str(self.workdir / name)}

        self.nodes = [
            Process(
                f"node{i}",
                ["serve"],
                dict(base, OMR_TUS_PORT=str(port), **data_dir(f"node{i}")),
                self.workdir,
                port,
            )
            for i, port in enumerate(free_ports(nodes))
        ]
        self.workers = [
            Process(
                f"worker{i}",
                ["worker"],
                dict(base, OMR_TUS_LOG_LEVEL="DEBUG", **data_dir(f"worker{i}")),
                self.workdir,
            )
            for i in range(workers)
        ]
        self.nginx = Nginx(self.workdir / "nginx", [f"127.0.0.1:{n.port}" for n in self.nodes])

    @property
    def url(self) -> str:
        return self.nginx.url

    def start(self) -> Cluster:
        try:
            self.nodes[0].start()  # alone first: it runs the migrations and creates the admin
            self.nodes[0].wait_ready()
            for process in self.nodes[1:] + self.workers:
                process.start()
            for node in self.nodes[1:]:
                node.wait_ready()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.nginx.stop()
        for process in self.nodes + self.workers:
            process.stop()
