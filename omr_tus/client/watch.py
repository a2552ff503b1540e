"""--wait: follow a batch through the OMR workers until it is completed or failed."""

from __future__ import annotations

import asyncio
import functools

from .api import Api
from .http import Backoff
from .progress import SheetsBar

INTERVAL = 1.0
RETRIES = 5
DONE = ("completed", "failed")


async def wait_for_batch(api: Api, batch_id: str) -> dict:
    """Polls GET /api/batches/{id}/progress with a sheets bar; returns the last answer."""
    bar = SheetsBar(0)
    poll = functools.partial(api.progress, batch_id)
    try:
        while True:
            progress = await Backoff(RETRIES, "reading the batch's progress").run(poll)
            bar.show(progress)
            if progress["status"] in DONE:
                return progress
            await asyncio.sleep(INTERVAL)
    finally:
        bar.close()
