"""A second, independent reading of the same page, the way high-stakes OMR reads twice.

It is OMRChecker's reading as its source defines it: each bubble's box averaged (here as a
share of the paper around it, so that a shadow does not pass for marks), one threshold for the page at the first large jump in the
sorted box means (looked at loosely, two neighbours either side), and one per field at its own
largest jump, falling back to the page's where the field has no confident jump of its own
(a field left blank, or marked throughout). It shares nothing with the main reader but the
box positions, so where the two disagree one of them is wrong and a person must look.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .template import Template, Thresholds

PAGE_DEFAULT = 200.0  # OMRChecker's page threshold for a white page when it finds no jump
LOCAL_DEFAULT = 255.0  # ... and a field's before it looks
PAGE_LOOSENESS = 2  # neighbours either side when looking for the page's jump
INK_SHARE = 0.005  # the darkest share of the pixels around the bubbles taken as the page's ink
INK_STEP = 3  # ... of every third pixel each way
MOSTLY_BLANK = 0.9  # share of fields read blank that, with two clear kinds of bubble, needs a look
DARK_MIN = 2  # bubbles clearly darker than the rest needed to call the page two-valued


@dataclass(frozen=True)
class SecondReading:
    marked: np.ndarray  # (bubbles,) bool, template order
    page_threshold: float
    two_valued: bool  # the box means split clearly in two (a confident page jump)
    dark: int  # bubbles below the page threshold


def box_means(page: np.ndarray, boxes: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Mean of each (x, y, w, h) box of `page` on a 0-255 scale where `paper`, the level
    around it, is 255 and the page's ink (the darkest pixels around the bubbles) is 0, as OMRChecker stretches the
    page before it reads (so a faded copy's marks still jump); from one integral image of the
    part of the page the boxes cover."""
    h, w = page.shape
    x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
    x1, y1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w), np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
    left, top = int(x0.min()), int(y0.min())
    region = page[top : int(y1.max()), left : int(x1.max())]
    total = cv2.integral(region, sdepth=cv2.CV_32S)
    x0, x1, y0, y1 = x0 - left, x1 - left, y0 - top, y1 - top
    corners = [total[y, x].astype(np.int64) for y, x in ((y1, x1), (y0, x1), (y1, x0), (y0, x0))]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    mean = (corners[0] - corners[1] - corners[2] + corners[3]) / area
    sample = region[::INK_STEP, ::INK_STEP].ravel()
    ink = float(np.partition(sample, int(INK_SHARE * (sample.size - 1)))[int(INK_SHARE * (sample.size - 1))])
    return np.clip(255 * (mean - ink) / np.maximum(paper - ink, 1), 0, 255)


def largest_jump(values: np.ndarray, loose: int, floor: float, default: float) -> tuple[float, float]:
    """(threshold, jump) at the first largest rise of `loose` neighbours either side in the
    sorted values, if it exceeds `floor`; else (default, floor)."""
    v = np.sort(values)
    if len(v) <= 2 * loose:
        return default, floor
    jumps = v[2 * loose :] - v[: -2 * loose]
    i = int(np.argmax(jumps))
    if jumps[i] <= floor:
        return default, floor
    return float(v[i] + jumps[i] / 2), float(jumps[i])


def read_twice(page: np.ndarray, template: Template, shifts: np.ndarray, paper: np.ndarray) -> SecondReading:
    """Which bubbles OMRChecker's thresholds call marked on the aligned page."""
    boxes = template.layout.boxes.copy()
    boxes[:, :2] += shifts
    means = box_means(page, boxes, paper)
    t: Thresholds = template.thresholds
    page_threshold, page_jump = largest_jump(means, PAGE_LOOSENESS, t.min_jump, PAGE_DEFAULT)
    marked = np.zeros(len(means), bool)
    start = 0
    for f in template.fields:
        span = slice(start, start + len(f.bubbles))
        marked[span] = means[span] < _field_threshold(means[span], page_threshold, t)
        start = span.stop
    return SecondReading(
        marked,
        page_threshold,
        page_jump >= t.min_jump + t.confident_surplus,
        int((means < page_threshold).sum()),
    )


def _field_threshold(values: np.ndarray, page_threshold: float, t: Thresholds) -> float:
    if len(values) < 3:
        return page_threshold if values.max() - values.min() < t.min_gap else float(values.mean())
    threshold, jump = largest_jump(values, 1, t.min_jump, LOCAL_DEFAULT)
    return page_threshold if jump < t.min_jump + t.confident_surplus else threshold


def mostly_blank_but_two_valued(
    second: SecondReading, blank_fields: int, fields: int, marked: int
) -> str | None:
    """A review reason when the main reading found (almost) nothing on a page whose bubbles
    clearly come in a light and a dark kind, most of them unread: the boxes likely missed the marks."""
    if (
        fields
        and blank_fields >= MOSTLY_BLANK * fields
        and second.two_valued
        and second.dark >= max(DARK_MIN, 2 * marked)
    ):
        return (
            f"{blank_fields} of {fields} fields read blank, yet {second.dark} bubbles are clearly "
            f"darker than the rest"
        )
    return None
