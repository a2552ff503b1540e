"""OMR worker processes started beside a server (`omr-tus serve`, OMR_TUS_WORKERS) or beside a
worker (`omr-tus worker --processes N`)."""

from __future__ import annotations

import subprocess
import sys


def spawn_workers(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "omr_tus", "worker"]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM, then up to 30 s for each to finish its sheet, then SIGKILL."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
