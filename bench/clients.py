"""A 1 GiB file through the product's own clients, against the tus benchmark client and against
the browser's own ceiling, in one run on one omr-tus server (127.0.0.1):

- tus: bench/client.py, 50 MiB PATCHes from memory (the `single` scenario of bench/run.py);
- cli: `omr-tus upload FILE --type zip_with_qr` (50 MiB PATCHes read from a file on /dev/shm);
- page: the web page's Uppy Dashboard in headless Debian chromium (Playwright), the same file;
- ceiling: the same chromium sending the same file to a sink that discards it
  (bench/browser_ceiling.py), in several request patterns of at most 50 MiB a request.

    .venv/bin/python bench/clients.py [--size-mib 1024] [--repeat 3] [--skip cli,tus]

Each round runs them in turn (the order rotates), waits for the server to move the file off
its RAM disk, and checks the batch's sha256. The report gives medians, each client's ratio to
the tus client measured in the same rounds, the page's ratio to the ceiling's best pattern, and
where the CPU went (the machine's 2 cores are shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import browser_ceiling
import client
import psutil
from browser_ceiling import PATTERNS, pattern_name
from client import Data, MiB
from servers import VENV_BIN, BusyMeter, Server, machine, versions, wait_quiet

CHUNK = 50 * MiB
CLIENTS = ("tus", "cli", "page", "ceiling")
CEILING: dict[tuple[int, int], list[float]] = {p: [] for p in PATTERNS}  # MB/s of each round
RATE = re.compile(r"([0-9.]+) MB/s")
WHOLE_COMMAND: list[float] = []  # seconds of each `omr-tus upload`, start-up included
Sha = Callable[[], str | None]  # the batch's sha256, once the server has it


def write_file(path: Path, data: Data, size: int) -> str:
    """The benchmark's byte stream written to a file (on /dev/shm: the disk is not measured)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        offset = 0
        while offset < size:
            n = min(CHUNK, size - offset)
            piece = data.slice(offset, n)
            f.write(piece)
            h.update(piece)
            offset += n
    return h.hexdigest()


def run_tus(srv: Server, data: Data, size: int, path: Path, meter: CpuMeter) -> tuple[float, Sha]:
    async def go():
        async with client.session(4) as sess:
            meter.start()
            t0 = time.perf_counter()
            r = await client.upload(sess, srv.base, srv.headers(), data, size, CHUNK)
            return time.perf_counter() - t0, r["id"]

    elapsed, upload_id = asyncio.run(go())
    meter.read()
    return elapsed, functools.partial(srv.batch_sha256, upload_id=upload_id, timeout=120)


def run_cli(srv: Server, data: Data, size: int, path: Path, meter: CpuMeter) -> tuple[float, Sha]:
    """Timed by the command's own final progress line (the transfer, from creating the upload
    to its last answer); the whole command, Python's start included, is noted apart."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "XDG_CONFIG_HOME": config}
        omr = str(VENV_BIN / "omr-tus")
        subprocess.run(
            [omr, "login", "--server", srv.base, "--username", "admin"],
            input=srv.password.encode(),
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        meter.start()
        t0 = time.perf_counter()
        done = subprocess.run(
            [omr, "upload", str(path), "--type", "zip_with_qr", "--chunk-size", "50"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - t0
    meter.read()
    batch_id = done.stdout.decode().strip().splitlines()[-1]
    rate = float(RATE.findall(done.stderr.decode())[-1]) * 1e6
    WHOLE_COMMAND.append(elapsed)
    return size / rate, functools.partial(srv.batch_sha256, batch_id=batch_id, timeout=120)


def run_page(srv: Server, data: Data, size: int, path: Path, meter: CpuMeter) -> tuple[float, Sha]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.browser import upload_through_page  # the same steps as the browser test

    elapsed, batch_id = upload_through_page(
        srv.base, "admin", srv.password, path, on_start=meter.start, on_uploaded=meter.read
    )
    return elapsed, functools.partial(srv.batch_sha256, batch_id=batch_id, timeout=120)


def run_ceiling(srv: Server, data: Data, size: int, path: Path, meter: CpuMeter) -> tuple[float, Sha | None]:
    """Every pattern once; the round's time is that of its best pattern (nothing to check)."""
    meter.start()  # the browser's start included: little next to 5 GiB sent
    _version, rates = browser_ceiling.ceiling(path)
    meter.read()
    for pattern, rate in zip(PATTERNS, rates):
        CEILING[pattern].append(rate)
    return size / max(rates) / 1e6, None


RUNNERS = {"tus": run_tus, "cli": run_cli, "page": run_page, "ceiling": run_ceiling}


class CpuMeter:
    """CPU seconds of one transfer (read when the client is done, before the server's durable
    copy): the server's, the finished child processes' (chromium with its Playwright driver,
    or `omr-tus upload`), this process's (the tus client, the ceiling's sink) and the rest of
    the machine's (other users of the cores)."""

    def __init__(self, server_pid: int, readings: list[dict[str, float]]):
        self.readings = readings
        self.server = psutil.Process(server_pid)
        self.start()

    def start(self) -> None:
        self.busy = BusyMeter()
        self.started = self._now()

    def _now(self) -> tuple[float, float, float]:
        own = os.times()
        server = {self.server.pid} | {p.pid for p in self.server.children(recursive=True)}
        children = own.children_user + own.children_system  # those that ended
        for proc in psutil.Process().children(recursive=True):  # and those still running
            if proc.pid not in server:
                with contextlib.suppress(psutil.NoSuchProcess):
                    children += sum(proc.cpu_times()[:2])
        t = self.server.cpu_times()
        return t.user + t.system, children, own.user + own.system

    def seconds(self) -> dict[str, float]:
        server, children, own = (b - a for a, b in zip(self.started, self._now()))
        return {
            "server": server,
            "browser or CLI": children,
            "bench": own,
            "others": self.busy.seconds() - server - children - own,
        }

    def read(self) -> None:
        self.readings.append(self.seconds())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated clients to leave out")
    args = parser.parse_args()
    clients = [c for c in CLIENTS if c not in args.skip.split(",")]
    size = args.size_mib * MiB
    data = Data()
    work = Path(tempfile.mkdtemp(prefix="omr-bench-clients-"))
    path = Path("/dev/shm") / f"omr-bench-{os.getpid()}.zip"  # a name the page accepts
    expected = write_file(path, data, size)
    srv = Server("ours", "ours", work).start()
    seconds: dict[str, list[float]] = {c: [] for c in clients}
    cpu: dict[str, list[dict[str, float]]] = {c: [] for c in clients}
    loads = [os.getloadavg()[0]]
    try:
        for round_ in range(args.repeat):
            order = clients[round_ % len(clients) :] + clients[: round_ % len(clients)]
            for name in order:
                wait_quiet()
                meter = CpuMeter(srv.pid, cpu[name])
                elapsed, sha_of = RUNNERS[name](srv, data, size, path, meter)
                sha = sha_of() if sha_of else expected
                srv.wait_settled()
                if sha != expected:
                    raise SystemExit(f"{name}: sha256 {sha} differs from the file's {expected}")
                seconds[name].append(elapsed)
                loads.append(os.getloadavg()[0])
                print(f"round {round_ + 1} {name}: {size / elapsed / 1e6:.0f} MB/s", file=sys.stderr)
    finally:
        srv.stop()
        path.unlink(missing_ok=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    print(
        f"Clients benchmark, {now}, commit {versions()['omr-tus']}, {m['nproc']} CPUs ({m['cpu']}), "
        f"{args.size_mib} MiB, {args.repeat} rounds, 50 MiB chunks, sha256 checked every time; "
        f"1-minute load average {min(loads):.1f} to {max(loads):.1f}\n"
    )
    rate = {name: [size / s / 1e6 for s in seconds[name]] for name in clients}
    median = {name: size / statistics.median(seconds[name]) / 1e6 for name in clients}
    if "tus" in clients:
        print(
            "| client | MB/s (median) | each round | median vs the tus client's | per round vs tus (median) |"
        )
        print("|---|---:|---|---:|---:|")
        for name in (c for c in clients if c != "ceiling"):
            paired = statistics.median(t / s for t, s in zip(seconds["tus"], seconds[name]))
            print(
                f"| {name} | {median[name]:.0f} | {', '.join(f'{r:.0f}' for r in rate[name])} "
                f"| {100 * median[name] / median['tus']:.0f} % | {100 * paired:.0f} % |"
            )
    if "ceiling" in clients:
        report_ceiling(rate, median)
    print("\nCPU seconds per GB moved, during the transfer (median of the rounds):\n")
    kinds = list(cpu[clients[0]][0])
    print(f"| client | {' | '.join(kinds)} |")
    print(f"|---|{'---:|' * len(kinds)}")
    for name in clients:
        moved = (
            size * (len(PATTERNS) if name == "ceiling" else 1) / 1e9
        )  # the ceiling sends it once a pattern
        per_gb = [statistics.median(c[kind] for c in cpu[name]) / moved for kind in kinds]
        print(f"| {name} | {' | '.join(f'{v:.2f}' for v in per_gb)} |")
    if WHOLE_COMMAND:
        whole = size / statistics.median(WHOLE_COMMAND) / 1e6
        print(f"\nThe whole `omr-tus upload` command, Python's start-up included: {whole:.0f} MB/s.")


def report_ceiling(rate: dict[str, list[float]], median: dict[str, float]) -> None:
    """The ceiling's patterns, and the page against the best of them."""
    print("\n| ceiling: requests at a time × slice | MB/s (median) | each round |")
    print("|---|---:|---|")
    for pattern, rates in CEILING.items():
        print(
            f"| {pattern_name(pattern)} | {statistics.median(rates):.0f} | {', '.join(f'{r:.0f}' for r in rates)} |"
        )
    best = max(CEILING, key=lambda p: statistics.median(CEILING[p]))
    ceiling = statistics.median(CEILING[best])
    if "page" in rate:
        paired = statistics.median(p / c for p, c in zip(rate["page"], rate["ceiling"]))
        print(
            f"\nThe page: {median['page']:.0f} MB/s (median; rounds {', '.join(f'{r:.0f}' for r in rate['page'])}), "
            f"{100 * median['page'] / ceiling:.0f} % of the ceiling's best pattern ({pattern_name(best)}, "
            f"{ceiling:.0f} MB/s); per round, against that round's best pattern: {100 * paired:.0f} % (median)."
        )


if __name__ == "__main__":
    main()
