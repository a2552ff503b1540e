"""HEAD /files/{id}: offset, length, metadata, expiry; 404 and 410."""

import pytest

from .helpers import encode_metadata


async def test_head_reports_state(api):
    await api.register_task("11600111")
    meta = {"filename": "a.zip", "upload_type": "zip_no_qr", "task_id": "11600111"}
    path = await api.create(10, meta)
    await api.patch(path, 0, b"1234")
    resp = await api.head(path)
    assert resp.status == 200
    assert resp.headers["Upload-Offset"] == "4"
    assert resp.headers["Upload-Length"] == "10"
    assert resp.headers["Upload-Metadata"] == encode_metadata(meta)
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Upload-Expires"].endswith("GMT")
    assert resp.headers["Tus-Resumable"] == "1.0.0"


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 412),
        ({"Tus-Resumable": "1.0.0"}, 401),
        ({"Tus-Resumable": "1.0.0", "Authorization": "Bearer nonsense"}, 401),
        ({"Tus-Resumable": "1.0.0", "Authorization": "Basic YTpi"}, 401),
    ],
)
async def test_head_refusals(api, headers, status):
    path = await api.create(1)
    resp = await api.client.head(path, headers=headers)
    assert resp.status == status
    if status == 412:
        assert resp.headers["Tus-Version"] == "1.0.0"


async def test_head_unknown_and_foreign(api):
    assert (await api.head("/files/" + "a" * 32)).status == 404
    path = await api.create(1)
    assert (await api.head(path, user="bob")).status == 404
    assert (await api.head(path, user="root")).status == 200


async def test_head_after_termination_is_410(api):
    path = await api.create(5)
    resp = await api.client.delete(path, headers=api.tus())
    assert resp.status == 204
    assert (await api.head(path)).status == 410
