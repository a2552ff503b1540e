"""Two API nodes and two workers, real processes on loopback, behind nginx (deploy/nginx.conf) in
round robin, sharing PostgreSQL and S3 (SeaweedFS): every node serves every request."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import urllib.parse

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tusclient import client as tus_client

from .cluster import ADMIN_PASSWORD, Cluster
from .conftest import _drop_pg_database, _pg_database, missing_part
from .helpers import eventually, recorded_batch
from .services import nginx_binary
from .test_omr_pipeline import KEY, TASK, TEMPLATE, zipped

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["s3", "shared-directory"])
def cluster(request, tmp_path_factory):
    """The nodes share S3 (SeaweedFS), or one directory as they would a CephFS or NFS mount."""
    if nginx_binary() is None:
        missing_part("nginx is not installed (Debian package nginx-light)")
    try:
        url, name = asyncio.run(_pg_database())
    except Exception as exc:
        missing_part(f"PostgreSQL not reachable ({type(exc).__name__})")
    workdir = tmp_path_factory.mktemp("cluster")
    if request.param == "s3":
        store = dict(
            request.getfixturevalue("seaweedfs").settings(prefix="cluster/"), s3_part_size=str(5 * MiB)
        )
    else:
        store = dict(
            store="local", store_dir=str(workdir / "shared" / "incoming"), data_dir=str(workdir / "shared")
        )
    cluster = Cluster(workdir, url, store, extra_env={"OMR_TUS_WORKER_LEASE": "4"})
    cluster.start()
    cluster.database_url, cluster.store_kind = url, request.param
    yield cluster
    cluster.stop()
    asyncio.run(_drop_pg_database(name))


async def login(base: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            base + "/api/auth/login", data={"username": "admin", "password": ADMIN_PASSWORD}
        ) as r:
            assert r.status == 200, await r.text()
            return {"Authorization": f"Bearer {(await r.json())['access_token']}"}


async def create(base: str, headers: dict, length: int, meta: str = "upload_type emlwX3dpdGhfcXI=") -> str:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            base + "/files/",
            headers={**TUS, **headers, "Upload-Length": str(length), "Upload-Metadata": meta},
        ) as r:
            assert r.status == 201, await r.text()
            return urllib.parse.urlsplit(r.headers["Location"]).path


async def patch(base: str, headers: dict, path: str, offset: int, body) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as s:
        async with s.patch(
            base + path,
            data=body,
            headers={
                **TUS,
                **headers,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
            timeout=aiohttp.ClientTimeout(total=60),
        ) as r:
            return r.status, dict(r.headers), await r.text()


async def head_offset(base: str, headers: dict, path: str) -> int:
    async with aiohttp.ClientSession() as s:
        async with s.head(base + path, headers={**TUS, **headers}) as r:
            assert r.status == 200
            return int(r.headers["Upload-Offset"])


async def batch_sha256(base: str, headers: dict, batch_id: str) -> str:
    return (await recorded_batch(base, headers, batch_id, timeout=30))["sha256"]


async def finished(cluster, headers: dict, batch_id: str, timeout: float, between=lambda: None) -> dict:
    """The batch's progress once it completed or failed; `between()` runs after each look."""
    async with aiohttp.ClientSession() as s:

        async def progress() -> dict:
            async with s.get(f"{cluster.url}/api/batches/{batch_id}/progress", headers=headers) as r:
                answer = await r.json()
            between()
            assert r.status == 200, (r.status, answer)  # retried: a node may answer an error meanwhile
            return answer

        return await eventually(
            progress, lambda p: p["status"] in ("completed", "failed"), timeout=timeout, interval=0.1
        )


def saved_by(node, upload_id: str) -> int:
    """PATCHes of this upload that the node wrote (its log says so for each one)."""
    return len(re.findall(rf"Upload {upload_id}: Saved", node.log_text()))


async def slow_body(data: bytes, block: int = 64 * 1024, pause: float = 0.03):
    for i in range(0, len(data), block):
        yield data[i : i + block]
        await asyncio.sleep(pause)


async def exam_batch(cluster, headers: dict, seeds: range) -> str:
    """A ZIP of simulated sheets for TASK (registered if need be), uploaded; its batch id."""
    import numpy as np

    from omr_tus.omr.simulate import EASY, simulate_sheet
    from omr_tus.omr.template import Template

    async with aiohttp.ClientSession() as s:
        async with s.post(
            cluster.url + "/api/tasks",
            headers=headers,
            json={"task_id": TASK, "name": "Physics", "template": TEMPLATE, "answer_key": KEY},
        ) as r:
            assert r.status in (201, 409), await r.text()
    template = Template.parse(TEMPLATE)
    data = zipped(
        [simulate_sheet(template, np.random.default_rng(seed), EASY, task_id=TASK) for seed in seeds]
    )
    path = await create(
        cluster.url, headers, len(data), meta="upload_type emlwX3dpdGhfcXI=,filename ZXhhbS56aXA="
    )
    status, hdrs, body = await patch(cluster.url, headers, path, 0, data)
    assert status == 204, body
    return hdrs["Batch-Id"]


async def answers_per_sheet(cluster, batch_id: str) -> list[tuple[int, int]]:
    """(sheet id, answer rows) for each page of the batch, read from the database."""
    engine = create_async_engine(cluster.database_url)
    try:
        async with engine.connect() as conn:
            return (
                await conn.execute(
                    text(
                        "SELECT s.id, count(a.sheet_id) FROM sheets s LEFT JOIN answers a ON a.sheet_id = s.id "
                        "WHERE s.batch_id = :b GROUP BY s.id"
                    ),
                    {"b": batch_id},
                )
            ).all()
    finally:
        await engine.dispose()


def each_read_once(per_sheet: list[tuple[int, int]], pages: int) -> bool:
    """One row per page, each with one full set of answers (a sheet read twice would have been
    refused by its lease; a partial set would show here)."""
    return len(per_sheet) == pages and len({count for _, count in per_sheet}) == 1 and per_sheet[0][1] > 60


async def test_patches_alternating_between_nodes_make_the_right_file(cluster, tmp_path):
    headers = await login(cluster.url)
    data = os.urandom(23 * MiB + 11)
    path = tmp_path / "exam.bin"
    path.write_bytes(data)
    client = tus_client.TusClient(cluster.url + "/files/", headers=headers)
    uploader = client.uploader(
        file_path=str(path),
        chunk_size=3 * MiB,
        metadata={"filename": "exam.bin", "upload_type": "zip_with_qr"},
    )
    await asyncio.wait_for(asyncio.to_thread(uploader.upload), 120)
    upload_id = uploader.url.rstrip("/").rsplit("/", 1)[1]
    counts = [saved_by(node, upload_id) for node in cluster.nodes]
    assert sum(counts) == 8 and min(counts) >= 3, counts  # round robin: both nodes wrote parts of it
    batch_id = uploader.request.response_headers["batch-id"]
    assert await batch_sha256(cluster.url, headers, batch_id) == hashlib.sha256(data).hexdigest()


async def test_the_same_chunk_sent_to_both_nodes_is_applied_once(cluster):
    headers = await login(cluster.url)
    data = os.urandom(2 * MiB)
    path = await create(cluster.url, headers, len(data))
    first, second = cluster.nodes
    results = await asyncio.gather(
        patch(first.url, headers, path, 0, slow_body(data)),
        patch(second.url, headers, path, 0, slow_body(data)),
    )
    statuses = sorted(r[0] for r in results)
    assert statuses[0] == 204 and statuses[1] in (409, 423), results
    loser = next(r for r in results if r[0] != 204)
    assert loser[1]["Upload-Offset"] == str(len(data)) if loser[0] == 409 else True
    winner = next(r for r in results if r[0] == 204)
    assert await batch_sha256(cluster.url, headers, winner[1]["Batch-Id"]) == hashlib.sha256(data).hexdigest()


async def test_a_batch_is_shared_by_workers_on_both_nodes_with_no_duplicate_answer(cluster):
    headers = await login(cluster.url)
    batch_id = await exam_batch(cluster, headers, range(12))
    progress = await finished(cluster, headers, batch_id, timeout=120)
    assert progress["status"] == "completed" and progress["processed_sheets"] == 12, progress
    assert each_read_once(await answers_per_sheet(cluster, batch_id), 12)
    read_by = [len(re.findall(r"Sheet \S+: \w+ in", w.log_text())) for w in cluster.workers]
    assert min(read_by) >= 1, read_by  # both workers read sheets of it


async def test_a_node_killed_mid_upload_and_the_client_resumes_through_the_other(cluster):
    headers = await login(cluster.url)
    data = os.urandom(16 * MiB)
    path = await create(cluster.url, headers, len(data))
    doomed, survivor = cluster.nodes
    sending = asyncio.ensure_future(
        patch(doomed.url, headers, path, 0, slow_body(data[: 14 * MiB], pause=0.01))
    )
    await eventually(  # until at least one 5 MiB part reached the bucket
        lambda: head_offset(survivor.url, headers, path),
        lambda offset: offset >= 5 * MiB,
        timeout=30,
        interval=0.1,
    )
    doomed.kill()
    with pytest.raises(aiohttp.ClientError):
        await sending
    try:
        offset = await head_offset(cluster.url, headers, path)  # nginx: the survivor answers
        assert 5 * MiB <= offset < 14 * MiB
        status, hdrs, body = await patch(cluster.url, headers, path, offset, data[offset:])
        assert status == 204, body
        assert await batch_sha256(cluster.url, headers, hdrs["Batch-Id"]) == hashlib.sha256(data).hexdigest()
    finally:
        doomed.start()
        doomed.wait_ready()


async def test_memory_stays_flat_during_8_concurrent_uploads(cluster):
    """A node's RSS during 8 concurrent uploads of 48 MiB (PATCHes of 16 MiB, parts on S3 or
    bytes on the shared directory) stays within 64 MiB of what it was idle."""
    import psutil

    headers = await login(cluster.url)
    node = cluster.nodes[0]
    process = psutil.Process(node.proc.pid)
    data = os.urandom(48 * MiB)

    async def one_upload() -> str:
        path = await create(node.url, headers, len(data))
        for offset in range(0, len(data), 16 * MiB):
            status, hdrs, body = await patch(
                node.url, headers, path, offset, data[offset : offset + 16 * MiB]
            )
            assert status == 204, body
        return hdrs["Batch-Id"]

    await one_upload()  # warm: connection pools, threads, imports
    await asyncio.sleep(1.0)
    idle = process.memory_info().rss
    peak = idle
    uploads = asyncio.gather(*(one_upload() for _ in range(8)))
    while not uploads.done():
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.02)
    batch_ids = await uploads
    assert len(set(batch_ids)) == 8
    grown = (peak - idle) / MiB
    print(
        f"\n[{cluster.store_kind}] idle RSS {idle / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB (+{grown:.1f} MiB)"
    )
    assert grown < 64, f"RSS grew by {grown:.1f} MiB during 8 concurrent uploads"


async def test_a_silent_writer_on_one_node_lets_go_when_another_node_asks(cluster):
    """Node A holds the upload for a PATCH whose client went silent (connection still open).
    A HEAD on node B asks A over NOTIFY to let go: A stops the writer, keeps its bytes, and B
    reports them within seconds, not after A's idle_timeout (60 s)."""
    headers = await login(cluster.url)
    path = await create(cluster.url, headers, 8 * MiB)
    first, second = cluster.nodes
    # By hand on a socket: the body's first MiB is handed to the kernel, then nothing more.
    reader, writer = await asyncio.open_connection("127.0.0.1", first.port)
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {
            **TUS,
            **headers,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            "Content-Length": str(8 * MiB),
            "Host": f"127.0.0.1:{first.port}",
        }.items()
    )
    writer.write(f"PATCH {path} HTTP/1.1\r\n{head}\r\n".encode() + os.urandom(MiB))
    await writer.drain()
    try:
        offset = await eventually(
            lambda: head_offset(second.url, headers, path),
            lambda offset: offset >= MiB,
            timeout=10,
            interval=0.2,
        )
        assert offset == MiB, offset
        status, _, body = await patch(second.url, headers, path, MiB, os.urandom(MiB))
        assert status == 204, body
    finally:
        writer.close()


async def test_a_worker_killed_mid_batch_leaves_no_sheet_unread_or_read_twice(cluster):
    headers = await login(cluster.url)
    victim = cluster.workers[0]
    seen = len(victim.log_text())  # what it logged for earlier tests
    batch_id = await exam_batch(cluster, headers, range(100, 116))
    killed = False

    def kill_once_it_reads() -> None:
        nonlocal killed
        if not killed and re.search(r"Sheet \S+: \w+ in", victim.log_text()[seen:]):
            victim.kill()  # SIGKILL mid-claim: its other sheets stay claimed until the lease (4 s) ends
            killed = True

    try:
        progress = await finished(cluster, headers, batch_id, timeout=90, between=kill_once_it_reads)
    finally:
        if killed:
            victim.start()
    assert killed and progress["status"] == "completed" and progress["processed_sheets"] == 16, progress
    assert each_read_once(await answers_per_sheet(cluster, batch_id), 16)
    engine = create_async_engine(cluster.database_url)
    try:
        async with engine.connect() as conn:
            claimed_again = (
                await conn.execute(
                    text("SELECT count(*) FROM sheets WHERE batch_id = :b AND attempts > 1"), {"b": batch_id}
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert claimed_again >= 1  # the dead worker's claims were taken over when their lease ended
