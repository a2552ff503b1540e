"""Adversarial sheets for the reader (issue 13): inputs outside the corpus, each with the truth a
careful human would give, so that `ok` with any answer off that truth — the one thing never
allowed — shows up. Run as a script: `python -m tests.adversary.harness IDEA [COUNT]`."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from omr_tus.omr import simulate
from omr_tus.omr.reader import read_sheet
from omr_tus.omr.render import DARK_VALUES, render_sheet
from omr_tus.omr.simulate import Difficulty
from omr_tus.omr.template import Bubble, Template

ROOT = Path(__file__).resolve().parents[2]
FORM = json.loads((ROOT / "tests/corpus/form-100q.json").read_text())
OWN_TEMPLATE = json.loads((ROOT / "config/templates/exam-60-mcq4.json").read_text())
SCANNER = Difficulty(1.0, 0.002, (0,), (0.4, 0.8), (2, 4), (80, 92), (200,), backdrop=(60, 120))


def custom_template(gap: int = 500) -> dict:
    """Our own OMRChecker template: MCQ5, INT_FROM_1, bubbleValues both ways, customLabels,
    blocks close together and near the page edges."""
    return {
        "pageDimensions": [1000, 1400],
        "bubbleDimensions": [30, 30],
        "preProcessors": [{"name": "CropPage", "options": {"morphKernel": [10, 10]}}],
        "customLabels": {"code": ["c1..3"]},
        "fieldBlocks": {
            "code": {
                "fieldType": "QTYPE_INT_FROM_1",
                "origin": [40, 40],
                "bubblesGap": 34,
                "labelsGap": 40,
                "fieldLabels": ["c1..3"],
            },
            "mcq5a": {
                "fieldType": "QTYPE_MCQ5",
                "origin": [300, 60],
                "bubblesGap": 36,
                "labelsGap": 40,
                "fieldLabels": ["q1..20"],
            },
            "mcq5b": {
                "fieldType": "QTYPE_MCQ5",
                "origin": [gap, 60],
                "bubblesGap": 36,
                "labelsGap": 40,
                "fieldLabels": ["q21..40"],
            },
            "vert": {
                "bubbleValues": ["P", "Q", "R"],
                "direction": "vertical",
                "origin": [760, 60],
                "bubblesGap": 34,
                "labelsGap": 36,
                "fieldLabels": ["v1..5"],
            },
            "edge": {
                "bubbleValues": ["a", "b", "c", "d"],
                "direction": "horizontal",
                "origin": [20, 1300],
                "bubblesGap": 40,
                "labelsGap": 40,
                "fieldLabels": ["e1..2"],
            },
        },
    }


def truth_of(template: Template, answers: dict[str, str], doubtful: set[str]) -> dict[str, str | None]:
    return simulate.column_truth(template, answers, doubtful)


def wrong_on_ok(result, truth: dict[str, str | None]) -> list[str]:
    """Columns read `ok` off the truth; a column whose truth is None must be flagged."""
    if result.status != "ok":
        return []
    out = []
    for col, want in truth.items():
        got = result.answers.get(col)
        if want is None and set(result.flags.get(col, ())) - {"blank"}:
            continue  # a doubtful column flagged multiple/ambiguous: a grader sees it
        if want is None or got != want:
            out.append(f"{col}: truth {want!r} read {got!r}")
    return out


def disc(shape, b: Bubble, cx: float, cy: float, scale: float) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(
        mask,
        (round(cx), round(cy)),
        (max(1, round(b.w / 2 * scale)), max(1, round(b.h / 2 * scale))),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    return mask


def ink(page: np.ndarray, mask: np.ndarray, darkness: float) -> None:
    page[:] = np.minimum(page, (255 * (1 - darkness * mask / 255.0))).astype(np.uint8)


def centre(b: Bubble) -> tuple[float, float]:
    return b.x + b.w / 2, b.y + b.h / 2


def partial(page, b, rng, share=(0.3, 0.7)):
    """A half-hearted fill: a wedge (pie slice) covering `share` of the bubble's area."""
    cx, cy = centre(b)
    mask = np.zeros(page.shape, np.uint8)
    start = rng.uniform(0, 360)
    cv2.ellipse(
        mask,
        (round(cx), round(cy)),
        (round(b.w / 2 * 0.9), round(b.h / 2 * 0.9)),
        0,
        start,
        start + 360 * rng.uniform(*share),
        255,
        -1,
        cv2.LINE_AA,
    )
    ink(page, mask, 0.9)


def x_mark(page, b, rng):
    cx, cy = centre(b)
    r = min(b.w, b.h) / 2
    mask = np.zeros(page.shape, np.uint8)
    t = max(1, round(r * 0.18))
    cv2.line(mask, (round(cx - r), round(cy - r)), (round(cx + r), round(cy + r)), 255, t)
    cv2.line(mask, (round(cx - r), round(cy + r)), (round(cx + r), round(cy - r)), 255, t)
    ink(page, mask, 0.9)


def circled(page, b, rng):
    """A ring drawn round the bubble (outside its outline), the bubble left empty."""
    cx, cy = centre(b)
    mask = np.zeros(page.shape, np.uint8)
    cv2.ellipse(
        mask, (round(cx), round(cy)), (round(b.w * 0.8), round(b.h * 0.8)), 0, 0, 360, 255, 2, cv2.LINE_AA
    )
    ink(page, mask, 0.9)


def solid(page, b, rng, darkness=(0.88, 0.97)):
    cx, cy = centre(b)
    ink(page, disc(page.shape, b, cx, cy, 0.95), rng.uniform(*darkness))


def render(template: Template, style=DARK_VALUES, answers: dict[str, str] | None = None) -> np.ndarray:
    """The printed form; its QR carries the student id the answers bubble (else "s")."""
    student = "".join((answers or {}).get(p, "") for p in template.custom_labels.get("student_id", ()))
    return render_sheet(template, "11600111", student or "s", style=style)


def answers_for(template: Template, rng, blank=0.05) -> dict[str, str]:
    _, answers = simulate.random_answers(template, rng, blank, 0.0)
    fields = template.field_map()
    for parts in template.custom_labels.values():
        answers.update({p: str(rng.choice([b.value for b in fields[p].bubbles])) for p in parts})
    return answers


def fill_all(page, template, answers, rng, darkness=(0.88, 0.97)):
    fields = template.field_map()
    for label, values in answers.items():
        for b in fields[label].bubbles:
            if b.value in values:
                solid(page, b, rng, darkness)


def sheet(
    template_raw: dict,
    rng,
    extra: Callable | None = None,
    level: Difficulty = SCANNER,
    darkness=(0.88, 0.97),
    style=DARK_VALUES,
    post: Callable | None = None,
):
    """Render, fill, apply `extra(page, template, answers, rng) -> doubtful columns`, scan."""
    template = Template.parse(template_raw)
    answers = answers_for(template, rng)
    page = render(template, style, answers)
    fill_all(page, template, answers, rng, darkness)
    doubtful = extra(page, template, answers, rng) if extra else set()
    image = simulate.scan(page, rng, level)
    if post:
        image = post(image, rng)
    return image, template, truth_of(template, answers, doubtful)


def _free_bubbles(template, answers):
    return [
        (f, b)
        for f in template.fields
        for b in f.bubbles
        if b.value not in answers.get(f.label, "") and f.label in answers
    ]


def mark_some(kind: Callable, count: int = 3, doubt: bool = True):
    """`count` empty bubbles get mark `kind`; their columns must be flagged (doubt) or stay as they were."""

    def extra(page, template, answers, rng):
        free = _free_bubbles(template, answers)
        picked = rng.choice(len(free), size=count, replace=False)
        out = set()
        for i in picked:
            f, b = free[i]
            kind(page, b, rng)
            out.add(f.label)
        return out if doubt else set()

    return extra


def main() -> None:
    from tests.adversary.ideas import IDEAS

    name = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    make = IDEAS[name]
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    stats = {"ok": 0, "needs_review": 0, "failed": 0, "wrong_on_ok_sheets": 0}
    for i in range(count):
        image, template, truth = make(rng)
        result = read_sheet(image, template, qr_expected=False)
        stats[result.status] += 1
        bad = wrong_on_ok(result, truth)
        if bad:
            stats["wrong_on_ok_sheets"] += 1
            print(
                f"  sheet {i}: OK-AND-WRONG {bad[:4]} ({len(bad)} cols) flags "
                f"{ {c: result.flags.get(c) for c in [b.split(':')[0] for b in bad[:4]]} }"
            )
        elif result.status != "ok" and i < 3:
            print(f"  sheet {i}: {result.status}: {(result.error or '')[:120]}")
    print(name, stats)


if __name__ == "__main__":
    main()
