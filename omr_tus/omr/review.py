"""The review picture: the aligned page with every bubble drawn as the reader judged it, so a
person sees at a glance what was read, what is doubtful and what was corrected."""

from __future__ import annotations

import cv2
import numpy as np

from .reader import bubble_states
from .template import Template

COLOURS = {"marked": (46, 160, 46), "ambiguous": (0, 140, 255), "blank": (175, 175, 175)}  # BGR
CORRECTED = (220, 90, 20)
LEGEND = (("marked", "read as marked"), ("ambiguous", "doubtful"), ("blank", "blank"))


def review_png(aligned: np.ndarray, template: Template, corrected: set[str]) -> bytes:
    """PNG of the page under a legend band; `corrected` holds output columns an admin has answered."""
    page = cv2.cvtColor(aligned, cv2.COLOR_GRAY2BGR)
    parts = {p: c for c, ps in template.custom_labels.items() for p in ps}
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for b, label, state in bubble_states(aligned, template):
        thick = 2 if state == "blank" else 3
        cv2.ellipse(
            page,
            (b.x + b.w // 2, b.y + b.h // 2),
            (b.w // 2 + 2, b.h // 2 + 2),
            0,
            0,
            360,
            COLOURS[state],
            thick,
        )
        boxes.setdefault(parts.get(label, label), []).append((b.x, b.y, b.x + b.w, b.y + b.h))
    for column in corrected & boxes.keys():
        xs0, ys0, xs1, ys1 = zip(*boxes[column])
        cv2.rectangle(page, (min(xs0) - 6, min(ys0) - 6), (max(xs1) + 6, max(ys1) + 6), CORRECTED, 2)
    ok, png = cv2.imencode(".png", _legend(page))
    return png.tobytes()


def _legend(page: np.ndarray) -> np.ndarray:
    """The page under a white band that explains the colours."""
    scale = max(page.shape[1] / 1600, 0.4)
    step = int(30 * scale)
    band = np.full((step + 8, page.shape[1], 3), 255, np.uint8)
    x = 8
    for state, text in (*LEGEND, ("corrected", "corrected by an admin")):
        colour = COLOURS.get(state, CORRECTED)
        cv2.circle(band, (x + step // 3, step // 2 + 4), step // 3, colour, -1)
        x += step
        cv2.putText(
            band,
            text,
            (x, int(step * 0.75) + 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.65 * scale,
            (40, 40, 40),
            max(1, int(2 * scale)),
            cv2.LINE_AA,
        )
        x += (
            cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.65 * scale, max(1, int(2 * scale)))[0][0] + step
        )
    return np.vstack([band, page])
