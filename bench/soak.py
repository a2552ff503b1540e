"""A soak: clients upload exam files over tus without pause while they go away again, and the
disk the server uses (RAM-disk store, durable files, cache, spools: every file under the store
and data folders except the database) and its RSS are sampled every second. It shows whether
disk use stays flat while many times the disk's worth passes through.

    .venv/bin/python bench/soak.py [--seconds 60] [--clients 4] [--size-mib 16] [--mode delete]

--mode delete: each client deletes its batch (DELETE /api/batches/{id}) once the file is
durable (its sha256 recorded). --mode retention: nobody deletes; OMR_TUS_KEEP_BATCHES_DAYS is
set to a few seconds, one worker process finishes each batch (the random bytes are no ZIP, so
it fails at once) and the janitor, every second, removes what is due.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from servers import Server, machine

MiB = 1024 * 1024


def disk_bytes(roots: list[Path]) -> int:
    """Bytes of every file under the roots but the SQLite database and its journals."""
    total = 0
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                if ".db" in name or name == "secret_key":
                    continue
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except FileNotFoundError:
                    pass
    return total


async def client(
    server: Server, http: aiohttp.ClientSession, data: bytes, deadline: float, delete: bool
) -> int:
    """Uploads (and deletes) until the deadline; how many uploads it made."""
    done = 0
    meta = "upload_type emlwX3dpdGhfcXI=,filename c29hay56aXA="  # zip_with_qr, soak.zip
    while time.monotonic() < deadline:
        headers = {**server.headers(), "Upload-Length": str(len(data)), "Upload-Metadata": meta}
        async with http.post(server.base + "/files/", headers=headers) as r:
            assert r.status == 201, await r.text()
            url = r.headers["Location"]
        patch = {**server.headers(), "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        async with http.patch(url, data=data, headers=patch) as r:
            assert r.status == 204, await r.text()
            batch_id = r.headers["Batch-Id"]
        done += 1
        if not delete:
            continue
        while True:  # the file is durable once its sha256 is recorded
            async with http.get(f"{server.base}/api/batches/{batch_id}", headers=server.auth_headers()) as r:
                if (await r.json())["sha256"]:
                    break
            await asyncio.sleep(0.02)
        async with http.delete(f"{server.base}/api/batches/{batch_id}", headers=server.auth_headers()) as r:
            assert r.status == 204, await r.text()
    return done


async def soak(server: Server, roots: list[Path], args) -> dict:
    data = os.urandom(args.size_mib * MiB)
    proc = psutil.Process(server.pid)
    samples: list[tuple[float, int, int]] = []
    started = time.monotonic()
    deadline = started + args.seconds

    async def sample() -> None:
        while True:
            samples.append((time.monotonic() - started, disk_bytes(roots), proc.memory_info().rss))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
        counts = await asyncio.gather(
            *(client(server, http, data, deadline, args.mode == "delete") for _ in range(args.clients))
        )
    elapsed = time.monotonic() - started
    stopped = time.monotonic()
    for _ in range(int(args.settle * 2)):  # the last moves and removals
        if disk_bytes(roots) == 0:
            break
        await asyncio.sleep(0.5)
    settled_in = time.monotonic() - stopped
    sampler.cancel()
    return {
        "uploads": sum(counts),
        "bytes": sum(counts) * len(data),
        "elapsed": elapsed,
        "disk_peak": max(s[1] for s in samples),
        "disk_median": statistics.median(s[1] for s in samples),
        "disk_end": disk_bytes(roots),
        "rss_first": samples[0][2],
        "rss_peak": max(s[2] for s in samples),
        "settled_in": settled_in,
        "timeline": [(round(t), d) for t, d, _ in samples[:: max(1, len(samples) // 12)]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients upload")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=16)
    parser.add_argument("--mode", choices=("delete", "retention"), default="delete")
    parser.add_argument(
        "--settle", type=float, default=30.0, help="at most this long for the disk to empty after"
    )
    args = parser.parse_args()
    settings = {"OMR_TUS_WORKERS": "0", "OMR_TUS_LOG_LEVEL": "WARNING"}
    if args.mode == "retention":
        settings.update(
            OMR_TUS_WORKERS="1",
            OMR_TUS_KEEP_BATCHES_DAYS=str(5 / 86400),  # five seconds after each batch finished
            OMR_TUS_JANITOR_INTERVAL="1",
        )
    with tempfile.TemporaryDirectory(prefix="omr-soak-") as tmp:
        server = Server("ours", "soak", Path(tmp), settings=settings).start()
        try:
            roots = [server.store_dir, Path(tmp) / "ours-data"]
            result = asyncio.run(soak(server, roots, args))
        finally:
            server.stop()
    box = machine()
    print(
        f"soak ({args.mode}), {box['nproc']} CPUs ({box['cpu']}), {args.clients} clients, {args.size_mib} MiB files, {args.seconds:.0f} s"
    )
    print(
        f"  {result['uploads']} uploads, {result['bytes'] / 1e9:.2f} GB through the server "
        f"({result['bytes'] / result['elapsed'] / 1e6:.0f} MB/s)"
    )
    print(
        f"  disk: peak {result['disk_peak'] / MiB:.0f} MiB, median {result['disk_median'] / MiB:.0f} MiB, "
        f"{result['disk_end'] / MiB:.1f} MiB at the end ({result['settled_in']:.1f} s after the clients stopped)"
    )
    print("  disk over time (s: MiB): " + ", ".join(f"{t}: {d / MiB:.0f}" for t, d in result["timeline"]))
    print(
        f"  server RSS (the serve process alone, not its worker): {result['rss_first'] / MiB:.0f} MiB at the first "
        f"sample, peak {result['rss_peak'] / MiB:.0f} MiB"
    )


if __name__ == "__main__":
    main()
