"""The exam office's housekeeping in a real browser against a live server (tests/test_web.py's
`site`):
- a batch deleted from its page, after a confirmation on the page that can be cancelled; the
  batch, its sheets and its file are then gone, and the audit names who deleted it;
- a user over quota: the upload page shows what is used of the quota, and an upload that does
  not fit is refused with the server's message naming quota and usage; the admin's Storage
  page shows the stores and every user's bytes against their quota.

Screenshots go where the other browser tests put theirs (tests/browser.py)."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy import select

from omr_tus.db.models import Upload
from omr_tus.http.keys import ENGINE

from .browser import login, open_browser, screenshot, wait_until
from .conftest import PASSWORD
from .helpers import TUS, encode_metadata, eventually
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


async def test_quota_messages_and_the_storage_page(browser_ready, site):
    await uploaded(site, exam_zip(4), "kept.zip")
    root = await root_token(site)
    me = await api_get(site, "/api/me")
    alice = me["id"]
    quota = me["usage_bytes"] + 100_000  # room for a small file, not for another exam
    assert await status_of(site, "PATCH", f"/api/users/{alice}", root, json={"quota_bytes": quota}) == 200
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        await wait_until(page, "!document.querySelector('#quota-note').hidden")
        note = await page.inner_text("#quota-note")
        assert "used" in note and "of" in note, note
        await page.locator(".uppy-Dashboard-input").first.set_input_files(
            {"name": "too-big.zip", "mimeType": "application/zip", "buffer": exam_zip(5)}
        )
        await page.click(".uppy-StatusBar-actionBtn--upload")
        banner = page.locator("#upload-messages .banner-error", has_text="Quota exceeded")
        await banner.wait_for()
        text = await banner.inner_text()
        assert "HTTP 413" in text and f"{quota} bytes" in text and "alice" in text, text
        await screenshot(page, "operations-over-quota")

        admin = await browser.new_page()
        await login(admin, "root", PASSWORD)
        await admin.goto("/#/storage")
        await admin.wait_for_selector("#storage-users tr[data-username='alice']")
        row = admin.locator("#storage-users tr[data-username='alice']")
        assert await row.locator(".cell-usage").get_attribute("data-usage") == str(me["usage_bytes"])
        assert await row.locator(".cell-quota").get_attribute("data-quota") == str(quota)
        used = int(await admin.locator("#store-durable .store-used").get_attribute("data-bytes"))
        assert used >= me["usage_bytes"]  # the exam's file is in durable storage
        await screenshot(admin, "operations-storage")
    assert (await api_get(site, "/api/batches"))["total"] == 1  # the refused upload made nothing


async def test_parts_of_an_upload_refused_past_the_quota_are_deleted(browser_ready, site, tmp_path):
    """A big file goes as four parts; the quota lets three in and refuses the fourth (413): the
    page shows why and deletes the three, which would otherwise go on sending and hold the
    quota for a day (found by review)."""
    import random

    from .live import MiB

    part = 52 * MiB
    path = tmp_path / "term.zip"
    path.write_bytes(random.Random(9).randbytes(4 * part))
    me = await api_get(site, "/api/me")
    quota = 3 * part + MiB
    root = await root_token(site)
    assert await status_of(site, "PATCH", f"/api/users/{me['id']}", root, json={"quota_bytes": quota}) == 200
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        await page.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
        await page.click(".uppy-StatusBar-actionBtn--upload")
        await page.locator("#upload-messages .banner-error", has_text="Quota exceeded").wait_for()
        await screenshot(page, "operations-parts-over-quota")

        async def parts() -> list[str]:
            async with site.server.app[ENGINE].connect() as conn:
                rows = await conn.execute(select(Upload.status).where(Upload.concat == "partial"))
                return sorted(rows.scalars().all())

        # three were created, then deleted by the page (once each had sent its request in flight)
        assert await eventually(
            parts, lambda s: s == ["terminated"] * 3, timeout=90, what="the parts deleted"
        )
    assert (await api_get(site, "/api/me"))["usage_bytes"] == 0
    assert (await api_get(site, "/api/batches"))["total"] == 0
