"""The web page in a real browser (Debian's chromium through Python Playwright) against a real
server on loopback, with workers reading the sheets in the test's event loop meanwhile.

- The page: sign in, upload a ZIP of simulated sheets through Uppy's Dashboard (tus), watch the
  batch complete, open it, download its CSV, open a sheet's review page, and, as an admin,
  correct an answer: the API then shows the correction with who made it.
- A 4xx at upload (a malformed task id) shows the server's own message on the upload page.
- A file of more than one 50 MiB chunk goes as four partial uploads side by side, joined by a
  final upload (tus concatenation) that carries the metadata; a reload in the middle, then the
  same file added again, continues each part from the server's offset (the server sees no new
  upload and no byte sent twice).
- The legacy client module (/lib/chunked-upload.js): 120 MiB through upload-chunk in 3 chunks,
  one of them failing once on the way (retried), and a small file through the direct upload;
  each batch's sha256 is the file's.
- How the page and its assets are served (content types, cache headers, 503 without a build).

The browser tests run on SQLite only, to stay fast; what they exercise of the database is
covered on both backends by the API tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import hashlib
import io
import random
import struct
from collections.abc import Callable

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from omr_tus import auth
from omr_tus.api import webpage
from omr_tus.app import create_app
from omr_tus.batches.worker import Worker
from omr_tus.http.keys import FILES, REPO
from omr_tus.omr.simulate import EASY, HARD, MEDIUM, simulate_sheet
from omr_tus.omr.template import Template

from .browser import login, need_browser, open_browser, screenshot, upload_file, wait_until
from .conftest import PASSWORD
from .helpers import eventually, recorded_batch
from .live import Live, MiB, _recorder
from .test_omr_pipeline import KEY, TASK, TEMPLATE, zipped

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CHUNK = 50 * MiB
IMAGE_SHOWN = "(() => { const i = document.getElementById('review-image'); return !!i && i.complete && i.naturalWidth > 500 })()"


@pytest.fixture
def browser_ready():
    need_browser()


class DropConnection:
    """Drops the connections of chosen requests before their body is read: the browser sees a
    reset connection (XHR status 0), as on a flaky network. (Playwright's page.route could do it
    from the browser's side, but it copies every intercepted 50 MiB body through the DevTools
    protocol, which costs seconds per chunk.)"""

    def __init__(self):
        self.matches: Callable[[web.Request], bool] = lambda request: False
        self.drops: Callable[[int], bool] = lambda n: False
        self.seen = 0  # requests that matched
        self.dropped = 0

    def arm(self, matches: Callable[[web.Request], bool], drops: Callable[[int], bool]) -> None:
        """`drops(n)` decides for the nth matching request (1-based)."""
        self.matches, self.drops, self.seen, self.dropped = matches, drops, 0, 0

    def disarm(self) -> None:
        self.drops = lambda n: False

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if self.matches(request):
            self.seen += 1
            if self.drops(self.seen):
                self.dropped += 1
                request.transport.abort()
                raise ConnectionResetError("dropped by the test")
        return await handler(request)


@pytest.fixture
async def site(aiohttp_server, settings):
    """A live server (as tests/live.py's, with its PATCH recorder) with alice, an admin (root),
    the exam task registered, a connection dropper, and workers once start_workers() is called."""
    box: list[Live] = []
    drop = DropConnection()
    app = create_app(settings)
    app.middlewares.append(drop.middleware)
    app.middlewares.append(_recorder(box))
    server = await aiohttp_server(app)
    repo = server.app[REPO]
    await auth.create_user(repo, "alice", PASSWORD)
    await auth.create_user(repo, "root", PASSWORD, admin=True)
    tokens = {}
    async with aiohttp.ClientSession(base_url=str(server.make_url("/"))) as http:
        for user in ("alice", "root"):
            async with http.post("/api/auth/login", data={"username": user, "password": PASSWORD}) as r:
                tokens[user] = (await r.json())["access_token"]
        async with http.post(
            "/api/tasks",
            headers={"Authorization": f"Bearer {tokens['root']}"},
            json={"task_id": TASK, "name": "Physics", "template": TEMPLATE, "answer_key": KEY},
        ) as r:
            assert r.status == 201, await r.text()
    live = Live(server, tokens["alice"])
    box.append(live)
    live.drop = drop
    live.base_url = str(server.make_url("/")).rstrip("/")
    stop = asyncio.Event()
    workers: list[asyncio.Task] = []

    def start_workers(count: int = 2) -> None:
        workers.extend(
            asyncio.create_task(
                Worker(repo, settings, server.app[FILES], name=f"web-w{i}", lease=60, sheets_per_claim=1).run(
                    stop, idle=0.1
                )
            )
            for i in range(count)
        )

    live.start_workers = start_workers
    try:
        yield live
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)


async def api_get(site, path: str, token: str | None = None) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            site.base_url + path, headers={"Authorization": f"Bearer {token or site.token}"}
        ) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()


async def batch_with_sha(site, batch_id: str) -> dict:
    return await recorded_batch(
        site.base_url, {"Authorization": f"Bearer {site.token}"}, batch_id, timeout=20
    )


def row_selector(batch_id: str) -> str:
    return f".batches-table tr[data-batch-id='{batch_id}']"


def exam_zip(seed: int = 7) -> bytes:
    template = Template.parse(TEMPLATE)
    rng = np.random.default_rng(seed)
    return zipped([simulate_sheet(template, rng, level, task_id=TASK) for level in (EASY, MEDIUM, HARD)])


async def test_upload_batch_review_and_correct(browser_ready, site, tmp_path):
    from playwright.async_api import expect

    data = exam_zip()
    path = tmp_path / "exam.zip"
    path.write_bytes(data)
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        _, batch_id = await upload_file(page, path, ready=lambda p: screenshot(p, "upload-dashboard"))
        link = page.locator(".recent-item a.batch-link")
        batch = await batch_with_sha(site, batch_id)
        assert (
            batch["filename"] == "exam.zip"
            and batch["upload_type"] == "zip_with_qr"
            and batch["size"] == len(data)
        )
        assert batch["sha256"] == hashlib.sha256(data).hexdigest()

        # the batches list, while no worker runs yet; then its bar follows the workers live
        await page.click("a.nav-link[href='#/batches']")
        row = page.locator(row_selector(batch_id))
        await expect(row).to_have_attribute("data-status", "uploaded")
        assert "Waiting for a worker" in await row.inner_text()
        site.start_workers()
        await expect(row).to_have_attribute("data-status", "completed", timeout=45_000)
        assert "3/3 sheets" in await row.inner_text()
        await screenshot(page, "batches")

        # the upload page followed the batch's processing too
        await page.click("a.nav-link[href='#/upload']")
        await page.wait_for_selector(
            f".recent-item[data-batch-id='{batch_id}'] .badge[data-status=completed]"
        )
        await screenshot(page, "upload-completed")

        await link.click()
        await page.wait_for_selector(".batch-head[data-status=completed]")
        rows = page.locator(".sheets-table tbody tr")
        await expect(rows).to_have_count(3)
        assert await page.locator("#batch-sha256").inner_text() == batch["sha256"]
        assert await page.locator("[data-fact=total]").inner_text() == "3"
        await screenshot(page, "batch-completed")

        # filters ask the server for ?status=...
        results = await api_get(site, f"/api/batches/{batch_id}/results")
        by_status = {
            s: sum(x["status"] == s for x in results["sheets"]) for s in ("ok", "needs_review", "failed")
        }
        for name, count in (
            ("needs_review", by_status["needs_review"]),
            ("failed", by_status["failed"]),
            ("all", 3),
        ):
            await page.click(f".segment[data-filter={name}]")
            await expect(page.locator(f".segment[data-filter={name}]")).to_have_attribute(
                "aria-pressed", "true"
            )
            await expect(rows).to_have_count(count)
            if count == 0:
                await page.locator(".table-card .empty").wait_for()
        # the CSV, fetched with the bearer token and saved under the server's name
        async with page.expect_download() as download_info:
            await page.click("#download-csv")
        download = await download_info.value
        assert download.suggested_filename == "exam.zip-results.csv"
        table = list(csv.reader(io.StringIO((await download.path()).read_text())))
        assert (
            table[0][:6] == ["source", "page", "task_id", "student_id", "status", "score"] and len(table) == 4
        )

        # a sheet's review page (the most doubtful one): the drawn scan and the answers; alice may not correct
        def doubts(s: dict) -> list[str]:
            return [c for c, flags in s["flags"].items() if set(flags) & {"ambiguous", "multiple"}]

        sheet = max((s for s in results["sheets"] if s["status"] != "failed"), key=lambda s: len(doubts(s)))
        sheet_id = sheet["sheet_id"]
        column = (doubts(sheet) + ["q1"])[0]
        await rows.locator(f"a[href='#/sheets/{sheet_id}']").first.click()
        await page.wait_for_selector(".answers-table tbody tr")
        await wait_until(page, IMAGE_SHOWN)
        assert await page.locator(".answer-input").count() == 0
        assert await page.locator(".answers-table tbody tr").count() == len(sheet["answers"])

        for doubtful in doubts(sheet):
            assert "row-doubt" in await page.locator(f"tr[data-column='{doubtful}']").get_attribute("class")

        # root, an admin, corrects one (a doubtful one if there is)
        await page.click("button.logout")
        await page.wait_for_selector("form.login-form")
        await login(page, "root", PASSWORD)
        assert await page.locator(".user-role").text_content() == "admin"
        await page.goto(f"/#/sheets/{sheet_id}")
        answer = page.locator(f".answer-input[data-column='{column}']")
        await answer.wait_for()
        before = sheet["answers"][column]
        after = "B" if before != "B" else "C"
        await answer.fill(after)
        await answer.press("Enter")
        await page.wait_for_selector(f".answers-table tr.row-corrected[data-column='{column}']")
        assert "Correction saved" in await page.locator(".banner-success").inner_text()
        assert "by root" in await page.locator(f"tr[data-column='{column}'] .cell-correction").inner_text()
        await wait_until(page, IMAGE_SHOWN)
        await page.evaluate("window.scrollTo(0, 0)")
        await screenshot(page, "review-corrected")
        assert browser.errors == []

    corrected = await api_get(site, f"/api/sheets/{sheet_id}")
    assert corrected["answers"][column] == after
    assert (
        corrected["corrections"][column]["by"] == "root"
        and corrected["corrections"][column]["original"] == before
    )


async def test_refused_upload_shows_the_servers_message(browser_ready, site, tmp_path):
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        await page.check("#type-zip_no_qr")
        dashboard_input = page.locator(".uppy-Dashboard-input").first
        await dashboard_input.set_input_files(
            {"name": "scans.zip", "mimeType": "application/zip", "buffer": exam_zip_small()}
        )
        await page.click(".uppy-StatusBar-actionBtn--upload")
        # no task id: the form says so before anything is sent
        await page.wait_for_selector("#upload-messages .banner-error:has-text('A task id is required')")

        await page.fill("#task-id", "1234x")
        await page.click(".uppy-StatusBar-actionBtn--upload")
        message = "Invalid task_id '1234x': it must be exactly 8 digits"
        banner = page.locator("#upload-messages .banner-error", has_text=message)
        await banner.wait_for()
        assert "HTTP 400" in await banner.inner_text()
        assert "refused scans.zip" in await banner.inner_text()
        await screenshot(page, "upload-refused")

        # a 401 anywhere (here: a token the server no longer accepts) leads back to the login page
        await page.evaluate("sessionStorage.setItem('omr-tus.token', 'expired')")
        await page.click("a.nav-link[href='#/batches']")
        await page.wait_for_selector(".login-card .banner-warning:has-text('Your session has expired')")
        await screenshot(page, "login-expired")
        await page.fill("#username", "alice")
        await page.fill("#password", PASSWORD)
        await page.click("form.login-form button[type=submit]")
        await page.wait_for_selector(".page-batches")  # back where the 401 happened
        assert browser.errors == []
    batches = await api_get(site, "/api/batches")
    assert batches["total"] == 0


async def test_a_bad_task_is_refused_before_the_parts_send_a_byte(browser_ready, site, tmp_path):
    path = tmp_path / "big-scan.zip"
    path.write_bytes(random.Random(6).randbytes(CHUNK + MiB))  # two partial uploads
    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        await page.check("#type-zip_no_qr")
        await page.fill("#task-id", "1234x")
        await page.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
        await page.click(".uppy-StatusBar-actionBtn--upload")
        message = "Invalid task_id '1234x': it must be exactly 8 digits"
        banner = page.locator("#upload-messages .banner-error", has_text=message)
        await banner.wait_for()
        assert "HTTP 400" in await banner.inner_text()
        assert browser.errors == []
    assert site.patches == []


def exam_zip_small() -> bytes:
    return zipped([simulate_sheet(Template.parse(TEMPLATE), np.random.default_rng(1), EASY, task_id=TASK)])


async def test_parts_side_by_side_and_a_reload_resumes_each_from_the_server_offset(
    browser_ready, site, tmp_path
):
    # four chunks and more: four partial uploads (the page's PARALLEL_PARTS), each a 50 MiB PATCH
    # and a 2 MiB one, joined by a final upload
    part = CHUNK + 2 * MiB
    size = 4 * part
    data = random.Random(5).randbytes(size)
    path = tmp_path / "big-scan.zip"
    path.write_bytes(data)
    # every PATCH after a part's first 50 MiB loses its connection
    site.drop.arm(lambda r: r.method == "PATCH" and r.headers.get("Upload-Offset") != "0", lambda n: True)

    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await login(page, "alice", PASSWORD)
        await page.goto("/#/upload")
        await page.fill("#task-id", TASK)  # the parts carry the task too: the server checks it at once
        await page.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
        await page.click(".uppy-StatusBar-actionBtn--upload")
        # the server has the first 50 MiB of each part, the rest cannot get through: the user reloads
        await eventually(
            lambda: (site.drop.dropped, [p for p in site.patches if p.status == 204]),
            lambda seen: seen[0] >= 4 and len(seen[1]) == 4,
            timeout=60,
            interval=0.02,
        )
        first = {p.upload_id for p in site.patches}
        assert len(first) == 4, "the file did not go as four partial uploads side by side"
        await page.reload()
        site.drop.disarm()
        await page.goto("/#/upload")  # still signed in: the token is in sessionStorage
        await page.fill("#task-id", TASK)
        await page.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
        await page.click(".uppy-StatusBar-actionBtn--upload")
        await page.locator(".recent-item a.batch-link").wait_for(timeout=60_000)
        batch_id = await page.locator(".recent-item").get_attribute("data-batch-id")
        assert browser.errors == []

    assert {p.upload_id for p in site.patches} == first, "the reload started new partial uploads"
    done = sorted((p.offset, p.new_offset) for p in site.patches if p.status == 204)
    assert done == [(0, CHUNK)] * 4 + [(CHUNK, part)] * 4, site.patches  # no byte sent twice
    batch = await batch_with_sha(site, batch_id)
    assert batch["sha256"] == hashlib.sha256(data).hexdigest()
    parts = await site.server.app[REPO].parts_of(batch["upload_id"])  # the final, never patched
    assert {p.id for p in parts} == first and [p.concat for p in parts] == ["partial"] * 4
    assert [p.task_id for p in parts] == [TASK] * 4  # checked when each part was created
    final = await site.server.app[REPO].upload(batch["upload_id"])
    assert (final.concat, final.upload_type, final.task_id, final.filename) == (
        "final",
        "zip_with_qr",
        TASK,
        "big-scan.zip",
    )


LEGACY_JS = """async ([blockB64, chunks, smallSize, token]) => {
  const m = await import('/lib/chunked-upload.js')
  m.setAuthToken(token)
  const block = Uint8Array.from(atob(blockB64), (c) => c.charCodeAt(0))
  const parts = []
  for (let i = 0; i < chunks; i++) {            // block i: its index (uint32 LE), then the block
    const head = new Uint8Array(4)
    new DataView(head.buffer).setUint32(0, i, true)
    parts.push(head, block.subarray(4))
  }
  const big = new File(parts, 'big-exam.zip', { type: 'application/zip' })
  const bigProgress = []
  const bigId = await m.uploadFileInChunks(big, 'zip_with_qr', null, (p) => bigProgress.push(p))
  const small = new File([block.subarray(0, smallSize)], 'small-exam.zip', { type: 'application/zip' })
  const smallProgress = []
  const smallId = await m.uploadFileInChunks(small, 'zip_with_qr', '', (p) => smallProgress.push(p))
  const polled = []
  const final = await m.pollBatchProgress(smallId, (p) => polled.push(p.status))
  let refused = null
  try { await m.uploadFileInChunks(small, 'images', '12', null) } catch (e) { refused = { name: e.name, status: e.status, message: e.message } }
  return { bigId, smallId, bigProgress, smallProgress, final, polled, refused }
}"""


async def test_legacy_client_module_chunks_retries_and_direct(browser_ready, site):
    block = random.Random(11).randbytes(MiB)
    blocks = 120
    small_size = 700 * 1024
    expected_big = hashlib.sha256(
        b"".join(struct.pack("<I", i) + block[4:] for i in range(blocks))
    ).hexdigest()
    expected_small = hashlib.sha256(block[:small_size]).hexdigest()
    site.start_workers(1)
    # the second chunk fails once on its way
    site.drop.arm(lambda r: r.path == "/api/batches/upload-chunk", lambda n: n == 2)

    async with open_browser(site.base_url) as browser:
        page = await browser.new_page()
        await page.goto("/")
        response = await page.request.get("/lib/chunked-upload.js")
        assert response.headers["content-type"].startswith("text/javascript")
        result = await page.evaluate(
            LEGACY_JS, [base64.b64encode(block).decode(), blocks, small_size, site.token]
        )
        assert browser.errors == []

    assert (site.drop.seen, site.drop.dropped) == (4, 1)  # 3 chunks, the second one twice
    progress = result["bigProgress"]
    assert {p["chunksTotal"] for p in progress} == {3}
    assert [p["currentChunk"] for p in progress][0] == 1 and progress[-1]["currentChunk"] == 3
    assert progress[-1]["percentage"] == 100 and progress[-1]["bytesUploaded"] == blocks * MiB
    assert [p["percentage"] for p in progress] == sorted(p["percentage"] for p in progress)
    assert {p["chunksTotal"] for p in result["smallProgress"]} == {1} and result["smallProgress"][-1][
        "percentage"
    ] == 100

    big = await batch_with_sha(site, result["bigId"])
    assert big["sha256"] == expected_big and big["size"] == blocks * MiB and big["filename"] == "big-exam.zip"
    small = await batch_with_sha(site, result["smallId"])
    assert small["sha256"] == expected_small and small["filename"] == "small-exam.zip"
    # random bytes are no ZIP: the workers fail the batch, and the poll ends there
    assert (
        result["final"]["status"] in ("completed", "failed")
        and result["final"]["batch_id"] == result["smallId"]
    )
    assert result["polled"][-1] == result["final"]["status"]
    assert result["refused"] == {
        "name": "UploadError",
        "status": 400,
        "message": "Invalid task_id '12': it must be exactly 8 digits",
    }


async def test_page_and_assets_are_served_public_with_cache_headers(aiohttp_client, settings, tmp_path):
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "lib").mkdir()
    (dist / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/app-ABC.js"></script>'
    )
    (dist / "assets" / "app-ABC.js").write_text("console.log(1)")
    (dist / "assets" / "app-ABC.css").write_text("body{}")
    (dist / "lib" / "chunked-upload.js").write_text("export const x = 1")
    app = create_app(settings)
    app[webpage.DIST_KEY] = dist
    client = await aiohttp_client(app)

    resp = await client.get("/")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert (
        resp.headers["Cache-Control"] == "no-cache"
        and "default-src 'self'" in resp.headers["Content-Security-Policy"]
    )
    again = await client.get("/", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    resp = await client.get("/assets/app-ABC.js")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (await client.get("/assets/app-ABC.css")).headers["Content-Type"] == "text/css; charset=utf-8"
    resp = await client.get("/lib/chunked-upload.js")
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    for missing in ("/assets/app-XYZ.js", "/assets/..%2Findex.html", "/assets/.hidden"):
        assert (await client.get(missing)).status == 404, missing

    with contextlib.suppress(FileNotFoundError):
        (dist / "index.html").unlink()
    resp = await client.get("/")
    assert resp.status == 503 and "./dev serve" in await resp.text()

    # documented in /openapi.json as public routes, and the document stays valid
    from openapi_spec_validator import validate

    spec = await (await client.get("/openapi.json")).json()
    validate(spec)
    for path in ("/", "/assets/{name}", "/lib/chunked-upload.js", "/lib/chunked-upload.js.map"):
        assert spec["paths"][path]["get"]["security"] == [], path
