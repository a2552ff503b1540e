"""The repository's group insert: many creations share a round trip, a bad row fails alone."""

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from omr_tus.db.models import utcnow
from omr_tus.http.keys import REPO


def row(upload_id: str, owner_id: int) -> dict:
    now = utcnow()
    return dict(
        id=upload_id,
        owner_id=owner_id,
        protocol="tus",
        length=1,
        upload_offset=0,
        upload_metadata={},
        raw_metadata=None,
        filename=None,
        upload_type="zip_with_qr",
        task_id=None,
        status="active",
        location="store",
        created_at=now,
        updated_at=now,
        expires_at=now,
        total_chunks=None,
        concat=None,
    )


async def test_group_insert_isolates_a_bad_row(api):
    repo = api.client.app[REPO]
    alice = (await repo.user_by_name("alice")).id
    await repo.insert_upload(**row("a" * 32, alice))
    ids = [f"{i:032x}" for i in range(1, 41)]
    results = await asyncio.gather(
        *(repo.insert_upload(**row(i, alice)) for i in ids[:20]),
        repo.insert_upload(**row("a" * 32, alice)),  # a duplicate id in the middle of the burst
        *(repo.insert_upload(**row(i, alice)) for i in ids[20:]),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], IntegrityError)
    for upload_id in ids:
        assert await repo.upload(upload_id) is not None


@pytest.mark.parametrize("burst", [1, 64])
async def test_concurrent_creations_all_land(api, burst):
    paths = await asyncio.gather(*(api.create(10) for _ in range(burst)))
    assert len(set(paths)) == burst
    for path in paths:
        assert (await api.head(path)).status == 200
