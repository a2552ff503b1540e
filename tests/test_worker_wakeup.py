"""An idle worker starts on new work at once: woken by PostgreSQL's NOTIFY (its poll is set to a
minute here, so only the notification can wake it in time), or by its short poll on SQLite."""

from __future__ import annotations

import asyncio

import numpy as np

from omr_tus.batches.wakeup import Wakeup
from omr_tus.http.keys import REPO
from omr_tus.omr.simulate import EASY, simulate_sheet
from omr_tus.omr.template import Template

from .helpers import eventually
from .test_omr_pipeline import TASK, TEMPLATE, register_task, upload, worker, zipped


async def test_an_idle_worker_wakes_for_new_work(api):
    await register_task(api)
    engine = api.client.app[REPO].engine
    postgres = engine.dialect.name == "postgresql"
    async with Wakeup(engine) as wakeup:
        assert wakeup.listening == postgres
    stop = asyncio.Event()
    running = asyncio.create_task(worker(api).run(stop, idle=60.0 if postgres else 0.05, listening_idle=60.0))
    try:
        await asyncio.sleep(0.5)  # nothing to do: the worker is waiting
        sheet = simulate_sheet(Template.parse(TEMPLATE), np.random.default_rng(5), EASY, task_id=TASK)
        batch_id = await upload(api, zipped([sheet]), upload_type="zip_with_qr")
        progress = await eventually(  # far less than the minute the worker would otherwise wait
            lambda: api.get_json(f"/api/batches/{batch_id}/progress"),
            lambda progress: progress["status"] == "completed",
            timeout=20,
        )
        assert progress["status"] == "completed" and progress["processed_sheets"] == 1, progress
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
