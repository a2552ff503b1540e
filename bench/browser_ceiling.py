"""How fast headless Chromium can upload a file at all, with no upload server in the way: a page
sends a local file to a sink that discards the body (aiohttp, loopback), in several ways. This
is the ceiling for the web page's upload speed (bench/clients.py), whatever the server does.

    .venv/bin/python bench/browser_ceiling.py [--size-mib 512]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from aiohttp import web
from playwright.async_api import async_playwright
from servers import machine

MiB = 1024 * 1024
PAGE = """<html><body><input type=file id=f><script>
// `lanes` requests at a time, each a slice of `chunk` bytes of the chosen file, as a file-backed
// Blob or read into memory first (an ArrayBuffer); returns MB/s over the whole file.
async function upload(lanes, chunk, inMemory) {
  const file = document.getElementById('f').files[0];
  const started = performance.now();
  let next = 0;
  async function lane() {
    while (next < file.size) {
      const start = next;
      next += chunk;
      let body = file.slice(start, Math.min(start + chunk, file.size));
      if (inMemory) body = await body.arrayBuffer();
      const response = await fetch('/sink', {method: 'PUT', body});
      await response.text();
    }
  }
  await Promise.all(Array.from({length: lanes}, lane));
  return file.size / (performance.now() - started) / 1000;
}
</script></body></html>"""
CASES = [(1, 50, False), (1, 100, False), (2, 50, False), (4, 50, False), (1, 50, True)]


async def sink(request: web.Request) -> web.Response:
    received = 0
    while block := await request.content.readany():
        received += len(block)
    return web.Response(text=str(received))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", lambda _request: web.Response(text=PAGE, content_type="text/html"))
    app.router.add_put("/sink", sink)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    folder = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".bin") as file:
        for _ in range(args.size_mib):
            file.write(os.urandom(MiB))
        file.flush()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
            )
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.set_input_files("#f", Path(file.name))
            info = machine()
            print(
                f"Browser ceiling, {info['nproc']} CPUs ({info['cpu']}), a {args.size_mib} MiB file, "
                f"Chromium {browser.version}\n"
            )
            print("| requests at a time | slice | body | MB/s |")
            print("|---:|---:|---|---:|")
            for lanes, chunk, in_memory in CASES:
                rate = await page.evaluate(f"upload({lanes}, {chunk * MiB}, {str(in_memory).lower()})")
                print(
                    f"| {lanes} | {chunk} MiB | {'ArrayBuffer' if in_memory else 'file Blob'} | {rate:.0f} |",
                    flush=True,
                )
            await browser.close()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
