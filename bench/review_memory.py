"""Memory of review pictures (issue 15): six `GET /api/sheets/{id}/review.png` at once of a
10,900 x 10,900 PNG (36 KB on disk, 119 megapixels decoded), with logins measured meanwhile.

    .venv/bin/python bench/review_memory.py [--source DIR] [--requests 6] [--mode RGBA]

One node (`omr-tus serve`, SQLite); a worker process lists the batch and is stopped before
the measurement, so the RSS sampled (every 20 ms) is the API process's alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fairness import login, prepare, progress, upload
from servers import VENV_BIN, RssSampler, Server, _http, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hostile import huge_png  # noqa: E402
from tests.test_omr_pipeline import TASK  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--mode", default="1", help="the PNG's Pillow mode: 1 (bilevel), L, I;16, RGBA")
    parser.add_argument("--source", help="run the omr_tus package of this checkout (PYTHONPATH) instead")
    args = parser.parse_args()
    if args.source:
        os.environ["PYTHONPATH"] = str(Path(args.source).resolve())
    with tempfile.TemporaryDirectory(prefix="omr-review-") as tmp:
        server = Server("ours", "omr-tus", Path(tmp), log_level="WARNING").start()
        try:
            env = prepare(server)
            token, _ = login(server, "alice")
            archive = Path(tmp) / "huge.zip"
            with zipfile.ZipFile(archive, "w") as z:
                z.writestr("huge.png", huge_png(mode=args.mode))
            batch = upload(server, token, archive, "huge.zip", upload_type="zip_no_qr", task_id=TASK)
            worker = subprocess.Popen(
                [str(VENV_BIN / "omr-tus"), "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 120
                while progress(server, token, batch)["total_sheets"] < 1:
                    assert time.monotonic() < deadline, "the batch was never listed"
                    time.sleep(0.2)
            finally:
                worker.terminate()
                worker.wait(60)
            status, _, body = _http(
                "GET",
                f"{server.base}/api/batches/{batch}/results",
                headers={"Authorization": f"Bearer {token}"},
            )
            sheet = __import__("json").loads(body)["sheets"][0]["sheet_id"]
            sampler = RssSampler(server.pid)
            idle = sampler.idle()
            logins: list[float] = []
            done = threading.Event()

            def keep_logging_in() -> None:
                while not done.is_set() and len(logins) < 1000:
                    logins.append(login(server, "bob")[1])

            with sampler, ThreadPoolExecutor(args.requests + 1) as pool:
                pool.submit(keep_logging_in)
                started = time.monotonic()
                answers = list(
                    pool.map(
                        lambda _: _http(
                            "GET",
                            f"{server.base}/api/sheets/{sheet}/review.png",
                            headers={"Authorization": f"Bearer {token}"},
                            timeout=300,
                        )[0],
                        range(args.requests),
                    )
                )
                seconds = time.monotonic() - started
                done.set()
            after = sampler.rss()
        finally:
            server.stop()
    print(
        f"\n## Review pictures ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()['nproc']} CPUs "
        f"{machine()['cpu']}, source {args.source or 'this checkout'})\n"
    )
    print(
        f"- {args.requests} review.png at once of a 10,900 x 10,900 {args.mode} PNG: "
        f"statuses {sorted(answers)}, {seconds:.1f} s"
    )
    print(
        f"- API process RSS: idle {idle / MiB:.0f} MiB, peak {sampler.peak / MiB:.0f} MiB "
        f"(+{(sampler.peak - idle) / MiB:.0f} MiB), after {after / MiB:.0f} MiB"
    )
    print(
        f"- logins meanwhile: {len(logins)}, median {statistics.median(logins) * 1000:.0f} ms, "
        f"max {max(logins) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
