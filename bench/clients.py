"""A 1 GiB file through the product's own clients, against the tus benchmark client, in one
run on one omr-tus server (127.0.0.1):

- tus: bench/client.py, 50 MiB PATCHes from memory (the `single` scenario of bench/run.py);
- cli: `omr-tus upload FILE --type zip_with_qr` (50 MiB PATCHes read from a file on /dev/shm);
- page: the web page's Uppy Dashboard in headless Debian chromium (Playwright), the same file.

    .venv/bin/python bench/clients.py [--size-mib 1024] [--repeat 3] [--skip page]

Each round runs the three in turn (the order rotates), waits for the server to move the file
off its RAM disk, and checks the batch's sha256. The report gives medians and each client's
ratio to the tus client measured in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import client
from client import Data, MiB
from servers import VENV_BIN, Server, machine, wait_quiet

CHUNK = 50 * MiB
CLIENTS = ("tus", "cli", "page")
RATE = re.compile(r"([0-9.]+) MB/s")
WHOLE_COMMAND: list[float] = []  # seconds of each `omr-tus upload`, start-up included


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


def run_tus(srv: Server, data: Data, size: int, path: Path) -> tuple[float, str]:
    async def go():
        async with client.session(4) as sess:
            t0 = time.perf_counter()
            r = await client.upload(sess, srv.base, srv.headers(), data, size, CHUNK)
            return time.perf_counter() - t0, r["id"]

    elapsed, upload_id = asyncio.run(go())
    return elapsed, srv.batch_sha256(upload_id=upload_id, timeout=120) or "?"


def run_cli(srv: Server, data: Data, size: int, path: Path) -> tuple[float, str]:
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
        t0 = time.perf_counter()
        done = subprocess.run(
            [omr, "upload", str(path), "--type", "zip_with_qr", "--chunk-size", "50"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - t0
    batch_id = done.stdout.decode().strip().splitlines()[-1]
    rate = float(RATE.findall(done.stderr.decode())[-1]) * 1e6
    WHOLE_COMMAND.append(elapsed)
    return size / rate, srv.batch_sha256(batch_id=batch_id, timeout=120) or "?"


def run_page(srv: Server, data: Data, size: int, path: Path) -> tuple[float, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.browser import upload_through_page  # the same steps as the browser test

    elapsed, batch_id = upload_through_page(srv.base, "admin", srv.password, path)
    return elapsed, srv.batch_sha256(batch_id=batch_id, timeout=120) or "?"


RUNNERS = {"tus": run_tus, "cli": run_cli, "page": run_page}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated clients to leave out (tus is always run)")
    args = parser.parse_args()
    clients = [c for c in CLIENTS if c == "tus" or c not in args.skip.split(",")]
    size = args.size_mib * MiB
    data = Data()
    work = Path(tempfile.mkdtemp(prefix="omr-bench-clients-"))
    path = Path("/dev/shm") / f"omr-bench-{os.getpid()}.zip"  # a name the page accepts
    expected = write_file(path, data, size)
    srv = Server("ours", "ours", work).start()
    seconds: dict[str, list[float]] = {c: [] for c in clients}
    try:
        for round_ in range(args.repeat):
            order = clients[round_ % len(clients) :] + clients[: round_ % len(clients)]
            for name in order:
                wait_quiet()
                elapsed, sha = RUNNERS[name](srv, data, size, path)
                srv.wait_settled()
                if sha != expected:
                    raise SystemExit(f"{name}: sha256 {sha} differs from the file's {expected}")
                seconds[name].append(elapsed)
                print(f"round {round_ + 1} {name}: {size / elapsed / 1e6:.0f} MB/s", file=sys.stderr)
    finally:
        srv.stop()
        path.unlink(missing_ok=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    print(
        f"Clients benchmark, {now}, {m['nproc']} CPUs ({m['cpu']}), {args.size_mib} MiB, "
        f"{args.repeat} rounds, 50 MiB chunks, sha256 checked every time\n"
    )
    print("| client | MB/s (median) | each round | median vs the tus client's | per round vs tus (median) |")
    print("|---|---:|---|---:|---:|")
    base = size / statistics.median(seconds["tus"]) / 1e6
    for name in clients:
        rates = [size / s / 1e6 for s in seconds[name]]
        median = size / statistics.median(seconds[name]) / 1e6
        paired = statistics.median(t / s for t, s in zip(seconds["tus"], seconds[name]))
        print(
            f"| {name} | {median:.0f} | {', '.join(f'{r:.0f}' for r in rates)} | {100 * median / base:.0f} % "
            f"| {100 * paired:.0f} % |"
        )
    if WHOLE_COMMAND:
        whole = size / statistics.median(WHOLE_COMMAND) / 1e6
        print(
            f"\nThe whole `omr-tus upload` command, Python's start-up included: {whole:.0f} MB/s "
            f"({100 * whole / base:.0f} % of the tus client)."
        )


if __name__ == "__main__":
    main()
