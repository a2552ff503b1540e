"""Load and soak on one omr-tus node (RELIABILITY.md, "Load"):

    .venv/bin/python bench/load.py load [--uploads 200] [--size-mib 8]    # N concurrent uploads
    .venv/bin/python bench/load.py soak [--minutes 15]                    # uploads and batches for a while

`load` starts N tus uploads at once and reports errors, the time, the server's peak RSS and
whether every stored file has the right sha256. `soak` runs, for the given minutes, small tus uploads,
legacy chunked uploads, terminated uploads and real exam batches read by a worker process, and
samples the RSS and open file descriptors of the server and the worker every 10 s; it reports
their growth between the second minute and the last one. Both use SQLite, or with --postgres a
fresh PostgreSQL database on 127.0.0.1. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import client
import psutil
from client import Data, MiB
from servers import VENV_BIN, RssSampler, Server, create_pg_database, drop_pg_database, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_omr_pipeline import KEY, TASK, TEMPLATE  # noqa: E402

MAX_REQUESTS = 200_000  # a bound on every loop, whatever the clock says
KiB = 1024
PAUSE = 0.05  # seconds between a soak loop's uploads: bounds the bytes kept on disk (a few GB per 15 min)


async def load(server: Server, count: int, size: int) -> None:
    data = Data()
    sampler = RssSampler(server.pid)
    idle = sampler.idle()
    errors: list[str] = []
    started = time.perf_counter()
    with sampler:
        async with client.session(limit=count) as sess:

            async def one() -> dict | None:
                try:
                    return await client.upload(sess, server.base, server.headers(), data, size, 4 * MiB)
                except Exception as exc:  # counted and reported: the point is to see none
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    return None

            results = await asyncio.gather(*(one() for _ in range(count)))
    seconds = time.perf_counter() - started
    expected = data.sha256(size)
    wrong = sum(1 for r in results if r and server.batch_sha256(upload_id=r["id"], timeout=120) != expected)
    print(f"\n## Load ({dt.date.today()}, {machine()['nproc']} CPUs {machine()['cpu']})\n")
    print(
        f"{count} concurrent tus uploads of {size // MiB} MiB (4 MiB PATCHes) on one node, "
        f"{'PostgreSQL' if server.db_url else 'SQLite'}:"
    )
    print(f"- completed: {sum(1 for r in results if r)} of {count}; errors: {len(errors)} {errors[:3]}")
    print(f"- wrong sha256: {wrong}; time {seconds:.1f} s ({count * size / seconds / 1e6:.0f} MB/s)")
    print(
        f"- server RSS: idle {idle / MiB:.0f} MiB, peak {sampler.peak / MiB:.0f} MiB "
        f"(+{(sampler.peak - idle) / MiB:.0f} MiB)"
    )


def exam_zip() -> bytes:
    import numpy as np

    from omr_tus.omr.simulate import EASY, simulate_sheet
    from omr_tus.omr.template import Template
    from tests.test_omr_pipeline import zipped

    template = Template.parse(TEMPLATE)
    return zipped(
        [simulate_sheet(template, np.random.default_rng(seed), EASY, task_id=TASK) for seed in range(4)]
    )


def sample(processes: dict[str, psutil.Process]) -> dict[str, tuple[int, int]]:
    return {name: (p.memory_info().rss, p.num_fds()) for name, p in processes.items()}


async def soak(server: Server, worker: psutil.Process, minutes: float) -> None:

    data = Data()
    exam = exam_zip()
    headers = server.headers()
    counts = {"tus": 0, "legacy": 0, "terminated": 0, "batches": 0, "errors": 0}
    samples: list[tuple[float, dict]] = []
    processes = {"server": psutil.Process(server.pid), "worker": worker}
    deadline = time.monotonic() + minutes * 60
    start = time.monotonic()
    async with client.session(limit=16) as sess:
        async with sess.post(
            server.base + "/api/tasks",
            headers=server.auth_headers(),
            json={"task_id": TASK, "name": "soak", "template": TEMPLATE, "answer_key": KEY},
        ) as r:
            assert r.status in (201, 409), await r.text()

        async def uploads() -> None:
            for i in range(MAX_REQUESTS):
                if time.monotonic() > deadline:
                    return
                try:
                    if i % 10 == 9:  # a batch the worker reads
                        url = await client.create(
                            sess,
                            server.base,
                            {
                                **headers,
                                "Upload-Metadata": "upload_type emlwX3dpdGhfcXI=,filename ZXhhbS56aXA=",
                            },
                            len(exam),
                        )
                        await client.patch(sess, url, headers, 0, memoryview(exam))
                        counts["batches"] += 1
                    elif i % 10 == 8:  # half an upload, then terminated
                        up = await client.upload(
                            sess, server.base, headers, data, 512 * KiB, 128 * KiB, stop_at=256 * KiB
                        )
                        async with sess.delete(up["url"], headers=headers) as r:
                            assert r.status == 204
                        counts["terminated"] += 1
                    elif i % 10 == 7:
                        await client.legacy_upload(
                            sess, server.base, server.auth_headers(), data, 600 * KiB, 256 * KiB
                        )
                        counts["legacy"] += 1
                    else:
                        await client.upload(sess, server.base, headers, data, 256 * KiB, 64 * KiB)
                        counts["tus"] += 1
                except Exception as exc:
                    counts["errors"] += 1
                    print(f"error: {type(exc).__name__}: {str(exc)[:200]}", file=sys.stderr)
                await asyncio.sleep(PAUSE)  # many small requests, few bytes: every completed file is kept

        async def sampler() -> None:
            while time.monotonic() < deadline:
                samples.append((time.monotonic() - start, sample(processes)))
                await asyncio.sleep(10)

        await asyncio.gather(sampler(), *(uploads() for _ in range(4)))
        async with sess.get(server.base + "/metrics", headers=server.auth_headers()) as r:
            batches = dict(
                re.findall(r'^omr_tus_batches\{status="(\w+)"\} ([0-9.e+]+)$', await r.text(), re.M)
            )
    report_soak(minutes, counts, batches, samples)


def report_soak(minutes: float, counts: dict, batches: dict, samples: list[tuple[float, dict]]) -> None:
    second = [s for t, s in samples if 60 <= t < 120]
    last = [s for t, s in samples if t >= minutes * 60 - 60]
    print(
        f"\n## Soak ({dt.date.today()}, {machine()['nproc']} CPUs {machine()['cpu']}, {minutes:g} minutes)\n"
    )
    print(f"Requests: {counts}; batches by status at the end: {batches}\n")
    print(
        "| process | RSS, 2nd minute (MiB) | RSS, last minute (MiB) | growth | open fds, 2nd minute | open fds, last minute |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("server", "worker"):
        rss = [statistics.median(s[name][0] for s in window) / MiB for window in (second, last)]
        fds = [statistics.median(s[name][1] for s in window) for window in (second, last)]
        print(
            f"| {name} | {rss[0]:.1f} | {rss[1]:.1f} | {rss[1] - rss[0]:+.1f} | {fds[0]:.0f} | {fds[1]:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("load", "soak"))
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--size-mib", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="PostgreSQL (a fresh database on 127.0.0.1, dropped afterwards) instead of SQLite",
    )
    args = parser.parse_args()
    database, db_url = create_pg_database() if args.postgres else (None, None)
    with tempfile.TemporaryDirectory(prefix="omr-load-") as tmp:
        server = Server("ours", "omr-tus", Path(tmp), db_url=db_url, log_level="WARNING").start()
        worker = None
        try:
            if args.mode == "load":
                asyncio.run(load(server, args.uploads, args.size_mib * MiB))
            else:
                _, env = server.command()
                worker = subprocess.Popen(
                    [str(VENV_BIN / "omr-tus"), "worker"],
                    env=env,
                    stdout=open(Path(tmp) / "worker.log", "wb"),
                    stderr=subprocess.STDOUT,
                )
                asyncio.run(soak(server, psutil.Process(worker.pid), args.minutes))
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(30)
            server.stop()
            if database:
                drop_pg_database(database)


if __name__ == "__main__":
    main()
