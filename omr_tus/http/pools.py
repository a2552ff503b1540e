"""Thread pools of their own for CPU-heavy requests of one kind (drawing review images), so
they never queue behind other work, nor other work (password hashing, which has its own)
behind them; memory is bounded by threads x one job, and a flood gets 503 at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import errors


class BoundedPool:
    def __init__(self, name: str, threads: int, waiting: int):
        self.name = name
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._slots = threads + waiting  # jobs running or queued; beyond: 503
        self._taken = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._taken >= self._slots:
            raise errors.BUSY(
                f"The server is busy with {self.name} work; retry in a few seconds", {"Retry-After": "5"}
            )
        self._taken += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._taken -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
