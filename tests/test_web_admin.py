"""The admin pages in a real browser against a live server (tests/test_web.py's `site`):

- Users: only admins see the entries; create a user with a quota, the last enabled admin
  refused (409 shown), a role changed, a user disabled (their token and login then refused),
  a quota set and shown against the bytes stored.
- Tasks: OMRChecker's files dropped on the page (a named file missing is shown, then added),
  registered, and a whole OMRChecker folder chosen; the list; the template drawn over a blank
  sheet; the answer key edited.
- Upload: a task id that is not registered is named before the first byte, and nothing is sent.

Screenshots go where the other browser tests put theirs (tests/browser.py)."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest

from .browser import login, open_browser, screenshot, wait_until
from .conftest import PASSWORD, missing_part, omr_samples
from .test_omr_pipeline import TASK
from .test_web import api_get, browser_ready, exam_zip_small, site  # noqa: F401  (fixtures)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

DROP = """([selector, files]) => {
  const data = new DataTransfer()
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))
    data.items.add(new File([bytes], f.name))
  }
  const target = document.querySelector(selector)
  for (const type of ['dragover', 'drop']) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }))
  }
}"""


async def drop_files(page, selector: str, paths) -> None:
    files = [{"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    await page.evaluate(DROP, [selector, files])


async def root_token(site) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            site.base_url + "/api/auth/login", data={"username": "root", "password": PASSWORD}
        ) as r:
            return (await r.json())["access_token"]


async def status_of(site, method: str, path: str, token: str, **kwargs) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, site.base_url + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        ) as r:
            return r.status


async def test_users_page(browser_ready, site):
    async with open_browser(site.base_url) as browser:
        alice = await browser.new_page()
        await login(alice, "alice", PASSWORD)
        assert await alice.locator("a.nav-link[data-nav]").count() == 0  # no admin entries for her
        await alice.goto("/#/users")
        await alice.wait_for_selector(".page-upload")  # and the route sends her away

        page = await browser.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # the confirmation before disabling
        await login(page, "root", PASSWORD)
        await page.click("a.nav-link[data-nav=users]")
        await page.wait_for_selector(".users-table tr[data-username=alice]")

        await page.fill("#new-username", "clerk")
        await page.fill("#new-password", "clerk password 1")
        await page.fill("#new-quota", "2 GiB")
        await page.click("form.create-user button[type=submit]")
        await page.wait_for_selector("#users-messages .banner-success:has-text('clerk can now sign in')")
        clerk = page.locator(".users-table tr[data-username=clerk]")
        await clerk.wait_for()
        assert await clerk.locator(".quota-input").input_value() == "2 GiB"

        # the only admin cannot stop being one
        await page.select_option(".users-table tr[data-username=root] .role-select", "user")
        await page.wait_for_selector("#users-messages .banner-error:has-text('no enabled admin')")
        assert "HTTP 409" in await page.locator("#users-messages .banner-error").inner_text()

        await page.select_option(".users-table tr[data-username=clerk] .role-select", "admin")
        await page.wait_for_selector("#users-messages .banner-success:has-text('clerk is now an admin')")

        await page.click(".users-table tr[data-username=alice] button[data-action=disable]")
        await page.wait_for_selector(".users-table tr[data-username=alice][data-state=disabled]")
        assert await status_of(site, "GET", "/api/batches", site.token) == 401
        async with aiohttp.ClientSession() as http:
            async with http.post(
                site.base_url + "/api/auth/login", data={"username": "alice", "password": PASSWORD}
            ) as r:
                assert r.status == 403 and "disabled" in (await r.json())["detail"]

        alice_quota = page.locator(".users-table tr[data-username=alice] .quota-input")
        await alice_quota.fill("1 MiB")
        await alice_quota.press("Enter")
        await page.wait_for_selector(
            ".users-table tr[data-username=alice] .cell-usage:has-text('0 B of 1.0 MiB')"
        )
        await screenshot(page, "admin-users")

        users = {
            u["username"]: u for u in (await api_get(site, "/api/users", await root_token(site)))["users"]
        }
        assert (users["clerk"]["role"], users["clerk"]["quota_bytes"]) == ("admin", 2 * 1024**3)
        assert (users["alice"]["disabled"], users["alice"]["quota_bytes"]) == (True, 1024**2)
        assert users["root"]["role"] == "admin"
        assert browser.errors == []


async def test_tasks_page_registers_dropped_files_and_shows_the_template(browser_ready, site):
    samples = omr_samples() or missing_part("the shared OMR samples are not here (set OMR_TUS_SAMPLES)")
    folder = samples / "answer-key" / "using-csv"
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "root", PASSWORD)
        await page.click("a.nav-link[data-nav=tasks]")
        await page.wait_for_selector(f".tasks-table tr[data-task-id='{TASK}']")

        await drop_files(page, "#task-dropzone", [folder / "template.json", folder / "evaluation.json"])
        await page.wait_for_selector("#task-checklist .item-missing:has-text('answer_key.csv')")
        await drop_files(page, "#task-dropzone", [folder / "answer_key.csv", folder / "adrian_omr.png"])
        await page.wait_for_selector("#task-checklist .item-ok:has-text('answer_key.csv')")
        await page.wait_for_selector("#task-checklist .item-unused:has-text('adrian_omr.png')")
        await page.fill("#new-task-id", "20000001")
        await page.fill("#new-task-name", "Adrian's five questions")
        await screenshot(page, "admin-task-files")
        await page.click("form.register-task button[type=submit]")
        await page.wait_for_selector("#tasks-messages .banner-success:has-text('Task 20000001')")
        await page.wait_for_selector(".tasks-table tr[data-task-id='20000001']")

        await page.click(".tasks-table tr[data-task-id='20000001'] a")
        await wait_until(
            page,
            "(() => { const i = document.getElementById('task-preview'); "
            "return !!i && i.complete && i.naturalWidth > 100 })()",
        )
        await screenshot(page, "admin-task-preview")
        task = await api_get(site, "/api/tasks/20000001", await root_token(site))
        assert task["name"] == "Adrian's five questions"
        assert [a["name"] for a in task["assets"]] == ["answer_key.csv"]

        # a whole OMRChecker folder: its JSON files at the top, the marker its template names,
        # and its scans (in a subfolder) left out
        await page.goto("/#/tasks")
        await page.set_input_files("#task-folder", str(samples / "sample1"))
        await page.wait_for_selector("#task-checklist .item-ok:has-text('omr_marker.jpg')")
        await page.wait_for_selector("#task-checklist .item-ok:has-text('config.json')")
        await page.wait_for_selector("#task-checklist .item-unused:has-text('MobileCamera/sheet1.jpg')")
        await page.fill("#new-task-id", "10000001")
        await page.click("form.register-task button[type=submit]")
        await page.wait_for_selector("#tasks-messages .banner-success:has-text('Task 10000001')")
        task = await api_get(site, "/api/tasks/10000001", await root_token(site))
        assert [a["name"] for a in task["assets"]] == ["omr_marker.jpg"] and task["config"] is not None

        # the answer key of the exam task, edited on its page
        await page.goto(f"/#/tasks/{TASK}")
        await page.wait_for_selector("#answer-key")
        key = json.loads(await page.locator("#answer-key").input_value())
        key["options"]["answers_in_order"] = ["B"] * 60
        await page.fill("#answer-key", json.dumps(key))
        await page.click("#save-key")
        await page.wait_for_selector("#task-messages .banner-success:has-text('Answer key saved')")
        saved = await api_get(site, f"/api/tasks/{TASK}", await root_token(site))
        assert saved["answer_key"]["options"]["answers_in_order"] == ["B"] * 60
        await page.fill("#answer-key", '{"options": ')
        await page.click("#save-key")
        await page.wait_for_selector("#task-messages .banner-error:has-text('not valid JSON')")
        assert browser.errors == []


async def test_upload_page_names_an_unregistered_task_before_sending(browser_ready, site):
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        site.drop.arm(lambda r: r.method == "POST" and r.path.startswith("/files"), lambda n: False)
        await page.check("#type-zip_no_qr")
        await page.fill("#task-id", "99999999")
        note = page.locator("#task-note")
        await note.wait_for(state="visible")
        assert "Task 99999999 is not registered" in await note.inner_text()
        await page.locator(".uppy-Dashboard-input").first.set_input_files(
            {"name": "scans.zip", "mimeType": "application/zip", "buffer": exam_zip_small()}
        )
        await page.click(".uppy-StatusBar-actionBtn--upload")
        await page.wait_for_selector(
            "#upload-messages .banner-error:has-text('Task 99999999 is not registered')"
        )
        await screenshot(page, "upload-unknown-task")
        assert site.drop.seen == 0 and site.patches == []  # not one upload created, not one byte sent

        await page.fill("#task-id", TASK)  # registered: the note goes
        await note.wait_for(state="hidden")
        await page.check("#type-zip_with_qr")  # a QR upload needs no registered task id
        await page.fill("#task-id", "99999999")
        await page.wait_for_timeout(300)
        assert await note.is_hidden()
        assert browser.errors == []
