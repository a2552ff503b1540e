"""Process-level tuning for the server and worker processes."""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """glibc gives every thread that allocates an arena of its own, and freed body blocks
    stay cached in each: with the store's writer threads that was 20 MiB of RSS for eight
    concurrent uploads, 8 MiB with one arena at the same throughput (BENCHMARKS.md).
    Does nothing (False) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def one_opencv_thread() -> None:
    """Workers run one process per CPU; OpenCV's own thread pool on top of that only makes
    them fight over the cores (two processes measured slower than one without this)."""
    import cv2

    cv2.setNumThreads(1)
