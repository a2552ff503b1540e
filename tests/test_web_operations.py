"""The exam office's housekeeping in a real browser against a live server (tests/test_web.py's
`site`): a batch deleted from its page, after a confirmation on the page that can be cancelled;
the batch, its sheets and its file are then gone, and the audit names who deleted it.

Screenshots go where the other browser tests put theirs (tests/browser.py)."""

from __future__ import annotations

import aiohttp
import pytest

from .browser import login, open_browser, screenshot, wait_until
from .conftest import PASSWORD
from .helpers import TUS, encode_metadata
from .test_web import api_get, batch_with_sha, browser_ready, exam_zip, site  # noqa: F401  (fixtures)
from .test_web_admin import root_token, status_of

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def uploaded(site, data: bytes, name: str) -> str:
    """A batch of alice's, uploaded over tus; its id."""
    headers = {
        **site.headers,
        **TUS,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": encode_metadata({"upload_type": "zip_with_qr", "filename": name}),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(site.base_url + "/files/", headers=headers) as r:
            assert r.status == 201, await r.text()
            url = r.headers["Location"]
        async with http.patch(
            url,
            data=data,
            headers={**headers, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        ) as r:
            assert r.status == 204, await r.text()
            return r.headers["Batch-Id"]


async def test_a_batch_is_deleted_from_its_page_after_a_confirmation(browser_ready, site):
    batch_id = await uploaded(site, exam_zip(3), "term1.zip")
    await batch_with_sha(site, batch_id)
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto(f"{site.base_url}/#/batches/{batch_id}")
        await wait_until(
            page,
            "!!document.querySelector('#batch-sha256') && !document.querySelector('#batch-sha256').textContent.includes('computed')",
        )
        await page.click("#delete-batch")
        await wait_until(page, "!!document.querySelector('#delete-confirm')")
        assert "term1.zip" in await page.inner_text(".confirm")
        await screenshot(page, "operations-delete-confirm")
        await page.click("#delete-cancel")
        await wait_until(page, "!document.querySelector('#delete-confirm')")
        assert (await api_get(site, f"/api/batches/{batch_id}"))["batch_id"] == batch_id  # nothing deleted

        await page.click("#delete-batch")
        await page.click("#delete-confirm")
        await wait_until(page, "location.hash === '#/batches'")
        await wait_until(
            page, "!!document.querySelector('.batches-table') || !!document.querySelector('.empty')"
        )
        assert batch_id not in await page.content()
        await screenshot(page, "operations-deleted")
    assert await status_of(site, "GET", f"/api/batches/{batch_id}", site.token) == 404
    audit = await api_get(site, "/api/deletions", await root_token(site))
    assert [(d["batch_id"], d["deleted_by"], d["filename"]) for d in audit["deletions"]] == [
        (batch_id, "alice", "term1.zip")
    ]
