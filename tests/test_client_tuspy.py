"""tuspy (the official Python tus client) against a live server, on SQLite and PostgreSQL.

tuspy is synchronous, so it runs in a thread (asyncio.to_thread) while the server keeps
serving on the test's event loop.
"""

from __future__ import annotations

import asyncio

from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from .live import MiB, live, random_file, upload_id_of  # noqa: F401  (live is a fixture)

TIMEOUT = 60  # seconds for any one blocking client call; a hang fails instead of stalling the suite


async def in_thread(fn, *args):
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), TIMEOUT)


def tus(live) -> tus_client.TusClient:
    return tus_client.TusClient(live.endpoint, headers=dict(live.headers))


async def test_upload_in_chunks_sha256_matches(live, tmp_path):
    size = 5 * MiB + 12345  # the last chunk is a short one
    path = tmp_path / "scan.zip"
    digest = random_file(path, size)
    uploader = tus(live).uploader(
        file_path=str(path),
        chunk_size=MiB,
        upload_checksum=True,
        metadata={"upload_type": "zip_with_qr", "filename": "scan.zip", "filetype": "application/zip"},
    )

    await in_thread(uploader.upload)

    assert uploader.offset == size
    upload_id = upload_id_of(uploader.url)
    batch_id = uploader.request.response_headers.get("batch-id")
    assert batch_id, uploader.request.response_headers
    assert [(p.offset, p.length, p.status) for p in live.patches_for(upload_id)] == [
        (i * MiB, min(MiB, size - i * MiB), 204) for i in range(6)
    ]
    batch = await live.batch(upload_id)
    assert batch["batch_id"] == batch_id
    assert (batch["sha256"], batch["size"], batch["filename"]) == (digest, size, "scan.zip")


async def test_resume_with_a_new_uploader(live, tmp_path):
    size = 5 * MiB + 777
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=2)
    storage = FileStorage(str(tmp_path / "tus-urls.json"))
    options = dict(
        file_path=str(path),
        chunk_size=MiB,
        store_url=True,
        url_storage=storage,
        metadata={"upload_type": "zip_with_qr", "filename": "scan.zip"},
    )
    try:
        first = tus(live).uploader(**options)
        for _ in range(2):  # two chunks, then the "client crashes"
            await in_thread(first.upload_chunk)
        assert first.offset == 2 * MiB
        url = first.url
        assert await live.head_offset(url) == 2 * MiB
        del first

        # A fresh client finds the URL in its storage (by the file's fingerprint) and asks for the offset.
        second = await in_thread(lambda: tus(live).uploader(**options))
        assert second.url == url
        assert second.offset == 2 * MiB
        started_at = []
        while second.offset < size:
            started_at.append(second.offset)
            await in_thread(second.upload_chunk)
        assert started_at == [2 * MiB, 3 * MiB, 4 * MiB, 5 * MiB]
        batch_id = second.request.response_headers.get("batch-id")
    finally:
        storage.close()

    upload_id = upload_id_of(url)
    seen = [(p.offset, p.length, p.status) for p in live.patches_for(upload_id)]
    assert seen == [(i * MiB, min(MiB, size - i * MiB), 204) for i in range(6)]
    assert sum(p.length for p in live.patches_for(upload_id)) == size  # every byte sent once
    batch = await live.batch(upload_id)
    assert batch_id and batch["batch_id"] == batch_id
    assert (batch["sha256"], batch["size"]) == (digest, size)


async def test_resume_from_url_alone(live, tmp_path):
    """The other way tuspy resumes: the application kept the URL and passes it as url=."""
    size = 3 * MiB
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=3)
    first = tus(live).uploader(file_path=str(path), chunk_size=MiB, metadata={"upload_type": "zip_with_qr"})
    await in_thread(first.upload_chunk)
    url = first.url

    second = await in_thread(lambda: tus(live).uploader(file_path=str(path), chunk_size=MiB, url=url))
    assert second.offset == MiB
    await in_thread(second.upload)

    upload_id = upload_id_of(url)
    assert [p.offset for p in live.patches_for(upload_id)] == [0, MiB, 2 * MiB]
    batch = await live.batch(upload_id)
    assert (batch["sha256"], batch["size"]) == (digest, size)
