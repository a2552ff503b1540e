"""A real browser for the web page tests: Debian's chromium (/usr/bin/chromium) driven by Python
Playwright, never a downloaded browser.

`need_browser()` checks the parts (chromium, playwright, the web build) and calls `missing_part`
for one that is missing: a skip locally, a failure in CI. `open_browser()` launches chromium and
yields a context factory whose pages record uncaught page errors, so a test can assert there
were none. Screenshots go to test-output/screenshots/ (or $OMR_TUS_TEST_OUTPUT/screenshots/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from omr_tus.api.webpage import DIST

from .conftest import missing_part
from .helpers import eventually

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 950}


def screenshots_dir() -> Path:
    base = os.environ.get("OMR_TUS_TEST_OUTPUT")
    path = (Path(base) if base else REPO / "test-output") / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def need_browser() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        missing_part(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium (./dev test installs it as root)"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing_part("Python Playwright is not installed (pip install -e '.[test]'; ./dev test does)")
    if not (DIST / "index.html").is_file():
        _build_web()


def _build_web() -> None:
    """Builds the page (omr_tus/web_dist) once if Node and web/node_modules are there (./dev test normally has)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        missing_part("Node.js (node, npm) is missing: the web page cannot be built for the browser tests")
    if not (WEB / "node_modules" / "esbuild").is_dir():
        missing_part("web/node_modules is missing: run `npm ci --prefix web` (./dev test does)")
    proc = subprocess.run(
        [npm, "run", "--silent", "build"], cwd=WEB, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"npm run build failed:\n{proc.stdout}\n{proc.stderr}"


class Pages:
    """Opens pages in fresh browser contexts (separate sessionStorage and localStorage)."""

    def __init__(self, browser, base_url: str):
        self.browser = browser
        self.base_url = base_url
        self.errors: list[str] = []
        self.contexts: list = []

    async def new_page(self, **options):
        context = await self.browser.new_context(
            base_url=self.base_url, viewport=VIEWPORT, accept_downloads=True, **options
        )
        context.set_default_timeout(20_000)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        return page


@contextlib.asynccontextmanager
async def open_browser(base_url: str):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        pages = Pages(browser, base_url)
        try:
            yield pages
        finally:
            for context in pages.contexts:
                with contextlib.suppress(Exception):
                    await context.close()
            await browser.close()


async def login(page, username: str, password: str) -> None:
    """Signs in through the login form and waits for the header to name the user."""
    await page.goto("/#/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("form.login-form button[type=submit]")
    await page.wait_for_selector(f".user-name:text-is('{username}')")


async def wait_until(page, expression: str, timeout: float = 20.0) -> None:
    """Polls a JS expression with page.evaluate (which the page's CSP allows, unlike
    wait_for_function's eval) until it is truthy."""
    await eventually(lambda: page.evaluate(expression), timeout=timeout, what=expression)


async def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    path = screenshots_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def upload_file(page, path: Path, timeout: float = 600.0, ready=None) -> tuple[float, str]:
    """Puts a file in the upload page's Dashboard (its own file input, as a user's file picker
    fills it), awaits `ready(page)` if given, presses Upload and waits for the batch:
    (seconds from the press to the batch link, batch id). The page must be signed in."""
    await page.goto("/#/upload")
    await page.locator(".uppy-Dashboard-input").first.set_input_files(str(path))
    await page.wait_for_selector(".uppy-Dashboard-Item")
    if ready is not None:
        await ready(page)
    started = asyncio.get_running_loop().time()
    await page.click(".uppy-StatusBar-actionBtn--upload")
    item = page.locator(".recent-item[data-batch-id]").first
    await item.wait_for(timeout=timeout * 1000)
    elapsed = asyncio.get_running_loop().time() - started
    return elapsed, await item.get_attribute("data-batch-id")


def upload_through_page(
    base_url: str,
    username: str,
    password: str,
    path: Path,
    on_start: Callable[[], None] = lambda: None,
    on_uploaded: Callable[[], None] = lambda: None,
) -> tuple[float, str]:
    """bench/clients.py: one upload through the web page in a fresh headless chromium;
    `on_start()` runs just before Upload is pressed, `on_uploaded()` as soon as the batch
    link shows (before the browser closes)."""

    async def ready(_page) -> None:
        on_start()

    async def run():
        async with open_browser(base_url) as browser:
            page = await browser.new_page()
            await login(page, username, password)
            result = await upload_file(page, path, ready=ready)
            on_uploaded()
            return result

    return asyncio.run(run())
