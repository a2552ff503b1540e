"""Issue 13's corpus, class by class: answers read right, wrong answers on sheets called `ok`,
review rate and reading speed, over more sheets than the test reads.

usage: .venv/bin/python bench/omr_corpus.py [--sheets 20] [--seed 2026]
Prints a Markdown table; tests/test_omr_corpus.py asserts the bar, this measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omr_tus.omr.reader import read_sheet  # noqa: E402
from tests.corpus import CLASSES, Tally  # noqa: E402


def measure(sheet_class, sheets: int, seed: int) -> tuple[Tally, float]:
    """The class's tally, and the CPU time of reading a sheet (ms, what load does not change)."""
    tally, cpu = Tally(), 0.0
    for sheet in sheet_class.sheets(sheets, seed):
        started, cpu_started = time.perf_counter(), time.process_time()
        result = read_sheet(sheet.image, sheet_class.template)
        tally.seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        tally.add(sheet, result)
    return tally, 1000 * cpu / max(tally.sheets, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sheets", type=int, default=20, help="sheets per class")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in `omr-tus worker`
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(
        f"OMR corpus, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, seed {args.seed}, "
        f"{args.sheets} sheets per class\n"
    )
    print(
        "| class | sheets | answers right | wrong on ok sheets | review rate | failed | sheets/s "
        "| CPU ms/sheet |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for sheet_class in CLASSES:
        t, cpu_ms = measure(sheet_class, args.sheets, args.seed)
        print(
            f"| {sheet_class.name} | {t.sheets} | {t.right}/{t.answers} ({100 * t.right_share:.2f} %) "
            f"| {t.wrong_on_ok} | {100 * t.review_share:.0f} % | {t.failed} | {t.sheets / t.seconds:.1f} "
            f"| {cpu_ms:.0f} |",
            flush=True,
        )
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
