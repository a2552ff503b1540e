"""DELETE /files/{id}: termination (an upload in progress), deletion (a completed one)."""

import pytest

from omr_tus.http.keys import STORE


async def test_terminate_removes_bytes_and_answers_410_after(api):
    path = await api.create(10)
    await api.patch(path, 0, b"abc")
    upload_id = path.rsplit("/", 1)[1]
    assert api.client.app[STORE].path(upload_id).exists()
    resp = await api.client.delete(path, headers=api.tus())
    assert resp.status == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert not api.client.app[STORE].path(upload_id).exists()
    for resp in (
        await api.patch(path, 3, b"d"),
        await api.head(path),
        await api.client.delete(path, headers=api.tus()),
    ):
        assert resp.status == 410


@pytest.mark.parametrize("user,status", [("bob", 404), ("root", 204)])
async def test_terminate_other_users_upload(api, user, status):
    path = await api.create(10)
    resp = await api.client.delete(path, headers=api.tus(user))
    assert resp.status == status


async def test_complete_upload_is_deleted_with_its_batch_and_answers_404_after(api):
    path = await api.create(3)
    batch_id = (await api.patch(path, 0, b"abc")).headers["Batch-Id"]
    resp = await api.client.delete(path, headers=api.tus())
    assert resp.status == 204
    for resp in (await api.head(path), await api.client.delete(path, headers=api.tus())):
        assert resp.status == 404
    await api.get_json(f"/api/batches/{batch_id}", status=404)


async def test_terminate_via_method_override(api):
    path = await api.create(10)
    resp = await api.client.post(path, headers={**api.tus(), "X-HTTP-Method-Override": "DELETE"})
    assert resp.status == 204
    assert (await api.head(path)).status == 410
