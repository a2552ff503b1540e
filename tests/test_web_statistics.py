"""The item analysis page in a real browser (Debian's chromium through Python Playwright): an
admin opens a rendered, read batch, follows its task to #/statistics/{task_id} and sees a chart
per question with the figures of the API; after a change of the answer key the page shows the
rescoring and its progress until the workers are done. Screenshots: statistics.png and
statistics-rescoring.png under the browser tests' output directory.

SQLite only, as the other browser tests: the API tests cover both databases."""

from __future__ import annotations

import pytest

from omr_tus.batches.rescore import Rescorer
from omr_tus.http.keys import REPO

from .browser import login, need_browser, open_browser, screenshot, wait_until
from .conftest import PASSWORD
from .test_omr_pipeline import TASK
from .test_rescoring import NEW_KEY, put_key
from .test_statistics import QUESTIONS, known_batch

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_the_statistics_page_of_a_rendered_batch(api):
    need_browser()
    batch_id, _ = await known_batch(api)
    stats = await api.get_json(f"/api/tasks/{TASK}/statistics", user="root")
    base_url = str(api.client.make_url("/")).rstrip("/")
    async with open_browser(base_url) as browser:
        page = await browser.new_page()
        await login(page, "root", PASSWORD)
        await page.goto(f"/#/batches/{batch_id}")
        # a batch of QR sheets: each sheet's task leads to the task's analysis
        await page.locator(".sheets-table a.task-link").first.click()
        await page.wait_for_selector(".stat-card")
        assert page.url.endswith(f"#/statistics/{TASK}")
        cards = page.locator(".stat-card")
        assert await cards.count() == len(QUESTIONS)
        assert await page.text_content("#stat-sheets") == str(stats["sheets"])
        assert await page.text_content("#stat-kr20") == f"{stats['kr20']:.2f}"
        for q in (stats["questions"][0], stats["questions"][1]):
            card = page.locator(f".stat-card[data-question={q['question']}]")
            label = await card.locator("svg").get_attribute("aria-label")
            assert f"difficulty {q['difficulty']:.2f}" in label
            expected = "—" if q["discrimination"] is None else f"{q['discrimination']:.2f}"
            assert f"discrimination {expected}" in label
            shown = {
                await c.get_attribute("data-choice"): int(await c.locator(".stat-count").text_content())
                for c in await card.locator(".stat-choice").all()
            }
            assert shown == q["choices"]
        assert await page.is_hidden("#rescoring")
        await screenshot(page, "statistics")

        await put_key(api, NEW_KEY)
        await page.reload()
        await page.wait_for_selector("#rescoring:not([hidden])")
        assert "0 of 9 done" in await page.text_content("#rescoring")
        await screenshot(page, "statistics-rescoring")
        rescorer = Rescorer(api.client.app[REPO], "web-rescorer", lease=60)
        assert await rescorer.run_once() == 9
        await wait_until(page, "document.getElementById('rescoring').hidden")
        assert browser.errors == []

        other = await browser.new_page()  # an uploader sees no link and no analysis
        await login(other, "alice", PASSWORD)
        await other.goto(f"/#/batches/{batch_id}")
        await other.wait_for_selector(".sheets-table tbody tr")
        assert await other.locator("a.task-link").count() == 0
