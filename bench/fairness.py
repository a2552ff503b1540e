"""Worker fairness (issue 15): with one user's 50,000-sheet batch in progress, how long does
another user's 10-sheet batch take, and how fast do health and login answer meanwhile?

    .venv/bin/python bench/fairness.py [--workers 2] [--big 50000] [--small 10] [--timeout 60]
    .venv/bin/python bench/fairness.py --source DIR    # the same against another checkout (a baseline)
    .venv/bin/python bench/fairness.py --alice-batches 40 --big 120   # Alice's work as many small batches

One omr-tus node (`omr-tus serve`, PostgreSQL in a fresh database) and `omr-tus worker
--processes N`. Alice's batch is real work: 25 TIFFs of 2,000 frames in a ZIP (each frame a
full simulated A4 sheet at 200 dpi, the frames sharing one strip so the ZIP stays ~100 MB);
Bob's is 10 simulated sheets (JPEG). Bob uploads once Alice's batch is being read. Every wait
is bounded by --timeout. With --alice-batches N, Alice's work is N batches of big/N simulated
JPEG sheets each instead (small batches are claimed whole, one claim each).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile
from pathlib import Path

from servers import VENV_BIN, Server, _http, create_pg_database, drop_pg_database, machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hostile import tiff_frames  # noqa: E402
from tests.test_omr_pipeline import TASK, TEMPLATE, zipped  # noqa: E402

FRAMES_PER_TIFF = 2_000
PASSWORD = "fairness-bench-password"


def alice_zip(path: Path, sheets: int) -> None:
    import numpy as np

    from omr_tus.omr.simulate import EASY, simulate_sheet
    from omr_tus.omr.template import Template

    page = simulate_sheet(Template.parse(TEMPLATE), np.random.default_rng(1), EASY, task_id=TASK).image
    if page.ndim == 3:
        page = page.mean(axis=2).astype(np.uint8)
    height, width = page.shape
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for first in range(0, sheets, FRAMES_PER_TIFF):
            frames = min(FRAMES_PER_TIFF, sheets - first)
            z.writestr(
                f"alice/part{first // FRAMES_PER_TIFF:02d}.tif",
                tiff_frames([(width, height)] * frames, page.tobytes()),
            )


def small_batches(sheets: int, batches: int) -> list[bytes]:
    """Alice's work as `batches` ZIPs of the same few JPEG sheets (built once)."""
    return [bob_zip(sheets // batches, seed=200)] * batches


def bob_zip(sheets: int, seed: int = 100) -> bytes:
    import numpy as np

    from omr_tus.omr.simulate import EASY, simulate_sheet
    from omr_tus.omr.template import Template

    template = Template.parse(TEMPLATE)
    return zipped(
        [simulate_sheet(template, np.random.default_rng(seed + i), EASY, task_id=TASK) for i in range(sheets)]
    )


def login(server: Server, user: str) -> tuple[str, float]:
    started = time.perf_counter()
    body = urllib.parse.urlencode({"username": user, "password": PASSWORD}).encode()
    status, _, data = _http(
        "POST", server.base + "/api/auth/login", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200, data
    return json.loads(data)["access_token"], time.perf_counter() - started


def upload(server: Server, token: str, path_or_bytes, filename: str, **meta: str) -> str:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    meta = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}"
        for k, v in {"filename": filename, "upload_type": "zip_with_qr", **meta}.items()
    )
    headers = {"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"}
    status, hdrs, body = _http(
        "POST",
        server.base + "/files/",
        b"",
        {**headers, "Upload-Length": str(len(data)), "Upload-Metadata": meta},
    )
    assert status == 201, body
    status, hdrs, body = _http(
        "PATCH",
        hdrs["Location"],
        data,
        {**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        timeout=300,
    )
    assert status == 204, body
    return hdrs["Batch-Id"]


def progress(server: Server, token: str, batch_id: str) -> dict:
    status, _, data = _http(
        "GET", f"{server.base}/api/batches/{batch_id}/progress", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200, data
    return json.loads(data)


def alice_progress(server: Server, token: str, batches: list[str]) -> dict:
    """Her batches' progress summed; `status` is "processing" while any one is not completed."""
    each = [progress(server, token, b) for b in batches]
    total = {key: sum(p[key] for p in each) for key in ("processed_sheets", "failed_sheets", "total_sheets")}
    return {**total, "status": "completed" if all(p["status"] == "completed" for p in each) else "processing"}


def prepare(server: Server) -> dict[str, str]:
    """Users alice and bob, the task registered; returns the server's environment."""
    _, env = server.command()
    for user in ("alice", "bob"):
        subprocess.run(
            [str(VENV_BIN / "omr-tus"), "users", "create", user],
            input=PASSWORD + "\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
    status, _, body = _http(
        "POST",
        server.base + "/api/tasks",
        json.dumps({"task_id": TASK, "name": "bench", "template": TEMPLATE}).encode(),
        {**server.auth_headers(), "Content-Type": "application/json"},
    )
    assert status == 201, body
    return env


def run(server: Server, args, tmp: Path) -> dict:
    env = prepare(server)
    alice_token, _ = login(server, "alice")
    bob_token, _ = login(server, "bob")
    if args.alice_batches > 1:
        alice_files = small_batches(args.big, args.alice_batches)
    else:
        alice_files = [tmp / "alice.zip"]
        alice_zip(alice_files[0], args.big)
    small = bob_zip(args.small)
    workers = subprocess.Popen(
        [str(VENV_BIN / "omr-tus"), "worker", "--processes", str(args.workers)],
        env=env,
        stdout=open(tmp / "workers.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        alice = [upload(server, alice_token, data, f"alice{i}.zip") for i, data in enumerate(alice_files)]
        deadline = time.monotonic() + args.timeout
        while (p := alice_progress(server, alice_token, alice))["processed_sheets"] + p[
            "failed_sheets"
        ] < 2 * args.workers:
            assert time.monotonic() < deadline, f"alice's batch never started: {p}"
            time.sleep(0.2)
        alice_before = p
        started = time.monotonic()
        bob = upload(server, bob_token, small, "bob.zip")
        health, logins = [], []
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            t = time.perf_counter()
            _http("GET", server.base + "/healthz")
            health.append(time.perf_counter() - t)
            logins.append(login(server, "bob")[1])
            bob_now = progress(server, bob_token, bob)
            if bob_now["status"] == "completed":
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
        alice_after = alice_progress(server, alice_token, alice)
    finally:
        workers.terminate()
        workers.wait(60)
    return {
        "bob_seconds": seconds,
        "bob": bob_now,
        "alice_before": alice_before,
        "alice_after": alice_after,
        "health": health,
        "logins": logins,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--big", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--alice-batches", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--source", help="run the omr_tus package of this checkout (PYTHONPATH) instead")
    args = parser.parse_args()
    if args.source:
        os.environ["PYTHONPATH"] = str(Path(args.source).resolve())
    database, db_url = create_pg_database()
    with tempfile.TemporaryDirectory(prefix="omr-fair-") as tmp:
        server = Server("ours", "omr-tus", Path(tmp), db_url=db_url, log_level="WARNING").start()
        try:
            result = run(server, args, Path(tmp))
        finally:
            server.stop()
            drop_pg_database(database)

    def done(p):
        return p["processed_sheets"] + p["failed_sheets"]

    bob = result["bob"]
    print(
        f"\n## Fairness ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()['nproc']} CPUs "
        f"{machine()['cpu']}, source {args.source or 'this checkout'}, {args.workers} worker processes)\n"
    )
    print(
        f"- Bob's {args.small}-sheet batch: {bob['status']} after {result['bob_seconds']:.1f} s "
        f"({done(bob)} of {bob['total_sheets']} sheets read)"
    )
    print(
        f"- Alice's {args.big} sheets in {args.alice_batches} batch(es) meanwhile: {done(result['alice_before'])} -> "
        f"{done(result['alice_after'])} sheets read, {result['alice_after']['status']}"
    )
    for name in ("health", "logins"):
        values = result[name]
        print(
            f"- {name}: {len(values)} requests, median {statistics.median(values) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
