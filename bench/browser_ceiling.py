"""How fast headless Chromium can upload a file at all, with no upload server in the way: a page
sends a local file to a sink that discards the body (aiohttp, loopback), in several request
patterns, every request body at most 50 MiB (the CDN cap the page's chunks respect). This is
the ceiling for the web page's upload speed, whatever the server does; bench/clients.py
measures the page against it in the same run.

    .venv/bin/python bench/browser_ceiling.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright
from servers import REPO, machine

sys.path.insert(0, str(REPO))
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # the page's own browser, launched alike  # noqa: E402

MiB = 1024 * 1024
PAGE = """<html><body><input type=file id=f><script>
// `lanes` requests at a time, each a slice of `chunk` bytes of the chosen file (a file-backed
// Blob); returns MB/s over the whole file.
async function upload(lanes, chunk) {
  const file = document.getElementById('f').files[0];
  const started = performance.now();
  let next = 0;
  async function lane() {
    while (next < file.size) {
      const start = next;
      next += chunk;
      const response = await fetch('/sink', {method: 'PUT', body: file.slice(start, Math.min(start + chunk, file.size))});
      await response.text();
    }
  }
  await Promise.all(Array.from({length: lanes}, lane));
  return file.size / (performance.now() - started) / 1000;
}
</script></body></html>"""
# (requests at a time, slice in MiB): every slice under the cap
PATTERNS = [(1, 50), (2, 50), (4, 50), (6, 50), (8, 25)]


def pattern_name(pattern: tuple[int, int]) -> str:
    return f"{pattern[0]} × {pattern[1]} MiB"


async def sink(request: web.Request) -> web.Response:
    received = 0
    while block := await request.content.readany():
        received += len(block)
    return web.Response(text=str(received))


async def measure(path: Path, patterns: list[tuple[int, int]]) -> tuple[str, list[float]]:
    """(Chromium's version, MB/s of each pattern) for the file at `path`, in one browser."""
    app = web.Application()
    app.router.add_get("/", lambda _request: web.Response(text=PAGE, content_type="text/html"))
    app.router.add_put("/sink", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{port}/")
                await page.set_input_files("#f", path)
                rates = [await page.evaluate(f"upload({lanes}, {chunk * MiB})") for lanes, chunk in patterns]
                return browser.version, rates
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


def ceiling(path: Path, patterns: list[tuple[int, int]] = PATTERNS) -> tuple[str, list[float]]:
    return asyncio.run(measure(path, patterns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".bin") as file:
        for _ in range(args.size_mib):
            file.write(os.urandom(MiB))
        file.flush()
        version, rates = ceiling(Path(file.name))
    info = machine()
    print(
        f"Browser ceiling, {info['nproc']} CPUs ({info['cpu']}), a {args.size_mib} MiB file, Chromium {version}\n"
    )
    print("| requests at a time × slice | MB/s |")
    print("|---|---:|")
    for pattern, rate in zip(PATTERNS, rates):
        print(f"| {pattern_name(pattern)} | {rate:.0f} |")


if __name__ == "__main__":
    main()
