"""OMR accuracy and speed on simulated scans: the project's renderer makes sheets with known
answers, the scan simulator degrades them at three difficulty levels, the reader reads them.

usage: .venv/bin/python bench/omr.py [--per-level 100] [--seed 2026] [--speed-sheets 40]
Prints a markdown table; nothing here asserts (the tests do), it measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from omr_tus.omr.reader import read_sheet
from omr_tus.omr.simulate import EASY, HARD, MEDIUM, simulate_sheet
from omr_tus.omr.template import Template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Template.parse(json.loads((ROOT / "config/templates/exam-60-mcq4.json").read_text()))
TASK = "11600111"


@dataclasses.dataclass
class Tally:
    sheets: int = 0
    ok: int = 0
    review: int = 0
    failed: int = 0
    answers: int = 0
    right: int = 0
    wrong: int = 0
    wrong_unflagged: int = 0  # a wrong answer on a sheet the reader called ok: the one thing never allowed
    flagged_as_due: int = 0  # ticks and broken ids the reader had to flag, and did
    missed_flags: int = 0
    qr: int = 0

    def add(self, sheet, result) -> None:
        self.sheets += 1
        self.ok += result.status == "ok"
        self.review += result.status == "needs_review"
        self.failed += result.status == "failed"
        self.qr += result.qr_payload == f"OMR:{TASK}:{sheet.student_id}"
        if result.status == "failed":
            return
        for column, truth in sheet.truth.items():
            got, flags = result.answers.get(column), result.flags.get(column, [])
            if truth is None:
                if "ambiguous" in flags or result.status == "needs_review":
                    self.flagged_as_due += 1
                else:
                    self.missed_flags += 1
                continue
            self.answers += 1
            if got == truth:
                self.right += 1
            else:
                self.wrong += 1
                self.wrong_unflagged += result.status == "ok"


def accuracy(per_level: int, seed: int) -> dict[str, Tally]:
    tallies = {}
    for name, level in (("easy (scanner-grade)", EASY), ("medium", MEDIUM), ("hard", HARD)):
        rng = np.random.default_rng(seed)
        tally = tallies[name] = Tally()
        for _ in range(per_level):
            sheet = simulate_sheet(TEMPLATE, rng, level, task_id=TASK)
            tally.add(sheet, read_sheet(sheet.image, TEMPLATE))
    return tallies


SPEED_LEVEL = dataclasses.replace(EASY, dpi=(200,))


def _speed_images(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [simulate_sheet(TEMPLATE, rng, SPEED_LEVEL, task_id=TASK).image for _ in range(count)]


_IMAGES: list[np.ndarray] = []  # set before the pool forks, so no image is pickled to a worker


def _read(indices: range) -> int:
    return sum(read_sheet(_IMAGES[i], TEMPLATE).status != "failed" for i in indices)


def speed(count: int, seed: int) -> tuple[float, float, float]:
    """Sheets/s of one process, of two processes splitting the same sheets, and the CPU time
    per sheet (ms) of the one process (what a loaded machine does not change)."""
    _IMAGES[:] = _speed_images(count, seed)
    _read(range(2))  # warm up
    started, cpu = time.perf_counter(), time.process_time()
    _read(range(count))
    one = count / (time.perf_counter() - started)
    cpu_ms = 1000 * (time.process_time() - cpu) / count
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_read, [range(0, 1), range(1, 2)])  # warm up both
        started = time.perf_counter()
        pool.map(_read, [range(0, count, 2), range(1, count, 2)])
        two = count / (time.perf_counter() - started)
    return one, two, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-level", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--speed-sheets", type=int, default=40)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in `omr-tus worker`: one process per CPU, no thread oversubscription
    started = time.time()
    tallies = accuracy(args.per_level, args.seed)
    one, two, cpu_ms = speed(args.speed_sheets, args.seed + 1)
    print(
        f"OMR benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, seed {args.seed}, {args.per_level} sheets per level, "
        f"template exam-60-mcq4 (60 MCQ4 + 8-digit student id), {time.time() - started:.0f} s\n"
    )
    print(
        "| level | sheets | ok / needs_review / failed | answers right | wrong | wrong on ok sheets "
        "| ticks flagged / missed | QR read |"
    )
    print("|---|---:|---|---:|---:|---:|---|---:|")
    for name, t in tallies.items():
        pct = 100.0 * t.right / t.answers if t.answers else 0.0
        print(
            f"| {name} | {t.sheets} | {t.ok} / {t.review} / {t.failed} | {t.right}/{t.answers} ({pct:.3f} %) "
            f"| {t.wrong} | {t.wrong_unflagged} | {t.flagged_as_due} / {t.missed_flags} "
            f"| {100.0 * t.qr / t.sheets:.1f} % |"
        )
    print(
        f"\nspeed at 200 dpi: {one:.1f} sheets/s in one process; {two:.1f} sheets/s in two ({two / one:.2f}x); "
        f"CPU {cpu_ms:.1f} ms a sheet in one process ({1000 / cpu_ms:.1f} sheets/s if CPU-bound); "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
