"""OMRChecker's public samples read by our pipeline (its preprocessors, then our bubble
reading), compared answer by answer and score by score with what OMRChecker read.

    .venv/bin/python bench/omr_samples.py [--samples ../shared/omr-samples]

Prints a Markdown table per sheet and every disagreement; the end-to-end test
(tests/test_omr_samples.py) runs the same comparison through the API.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omr_tus.omr.reader import read_sheet  # noqa: E402
from omr_tus.omr.scoring import AnswerKey  # noqa: E402
from omr_tus.omr.template import Template  # noqa: E402
from tests.conftest import omr_samples  # noqa: E402
from tests.samples import compare_sheet, sample_tasks  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=omr_samples())
    args = parser.parse_args()
    if args.samples is None:
        sys.exit("the OMRChecker samples were not found: pass --samples")
    print("| sheet | status | answers agreeing | score ours / OMRChecker's | flagged columns | ms |")
    print("|---|---|---:|---|---|---:|")
    total = agree = 0
    disagreements = []
    for task in sample_tasks(args.samples):
        template = Template.parse(task.template, task.config, task.assets)
        key = AnswerKey.parse(task.evaluation, task.assets) if task.evaluation else None
        for file, row in task.expected.items():
            image = cv2.imread(str(task.folder / file))
            started = time.perf_counter()
            result = read_sheet(image, template)
            ms = 1000 * (time.perf_counter() - started)
            sheet = {"answers": result.answers, "flags": result.flags}
            count, differ = compare_sheet(task, file, sheet)
            total, agree = total + count, agree + count - len(differ)
            disagreements += differ
            ours = key.score(result.answers, template.empty_value) if key else 0.0
            flagged = ", ".join(c for c, f in result.flags.items() if "ambiguous" in f) or "–"
            print(
                f"| {task.name}/{file} | {result.status} | {count - len(differ)}/{count} | "
                f"{ours:g} / {float(row['score']):g} | {flagged} | {ms:.0f} |"
            )
    print(f"\n**{agree}/{total} answers agree ({100 * agree / total:.2f} %).**")
    for d in disagreements:
        print(f"| {d.file} | {d.column} | ? | {d.ours!r} | {d.theirs!r} |")


if __name__ == "__main__":
    main()
