"""GET /files/{id}: the owner downloads a completed upload."""

import asyncio


async def test_download_completed_upload(api):
    path = await api.create(5, {"filename": "Prüfung 1.zip", "filetype": "application/zip"})
    await api.patch(path, 0, b"12345")
    resp = await api.client.get(path, headers=api.auth())
    assert resp.status == 200
    assert await resp.read() == b"12345"
    assert resp.headers["Content-Type"] == "application/zip"
    disposition = resp.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="Pr_fung 1.zip"')
    assert "filename*=UTF-8''Pr%C3%BCfung%201.zip" in disposition
    await asyncio.sleep(0.2)  # after the move to durable storage, too
    resp = await api.client.get(path, headers=api.auth())
    assert await resp.read() == b"12345"


async def test_download_refusals(api):
    path = await api.create(5)
    assert (await api.client.get(path, headers=api.auth())).status == 400  # not complete
    await api.patch(path, 0, b"12345")
    assert (await api.client.get(path, headers=api.auth("bob"))).status == 404
    assert (await api.client.get(path)).status == 401


async def test_unsafe_filetype_is_not_echoed(api):
    path = await api.create(1, {"filetype": "text/html\r\nX-Evil: 1"})
    await api.patch(path, 0, b"x")
    resp = await api.client.get(path, headers=api.auth())
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert "X-Evil" not in resp.headers
