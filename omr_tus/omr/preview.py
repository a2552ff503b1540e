"""A task's template drawn over the blank sheet it describes (the Tasks page): each field
block framed in its own colour, every bubble outlined, the markers and the QR box marked, so
an admin sees at a glance whether a template they dropped fits their form."""

from __future__ import annotations

import cv2
import numpy as np

from .render import render_sheet
from .template import Template

MAX_PIXELS = 40_000_000  # a page larger than this (about A3 at 300 dpi) is not drawn
WIDTH = 1200  # the preview's width in pixels at most
# BGR colours, one per field block in turn: distinguishable on white and for most colour vision
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140))
MARKERS = (0, 0, 220)
QR = (200, 80, 0)


class TooLarge(ValueError):
    pass


def preview_png(template: Template, task_id: str) -> bytes:
    """The PNG; raises TooLarge for a page over MAX_PIXELS (memory stays bounded)."""
    w, h = template.page
    if w * h > MAX_PIXELS:
        raise TooLarge(f"the page ({w} x {h} pixels) is too large to preview")
    page = cv2.cvtColor(render_sheet(template, task_id, "STUDENT"), cv2.COLOR_GRAY2BGR)
    line = max(2, round(w / 600))
    blocks: dict[str, list] = {}
    for f in template.fields:
        blocks.setdefault(f.block or f.label, []).extend(f.bubbles)
    for i, (name, bubbles) in enumerate(blocks.items()):
        colour = PALETTE[i % len(PALETTE)]
        for b in bubbles:
            cv2.rectangle(page, (b.x, b.y), (b.x + b.w, b.y + b.h), colour, 1)
        x0, y0 = min(b.x for b in bubbles), min(b.y for b in bubbles)
        x1, y1 = max(b.x + b.w for b in bubbles), max(b.y + b.h for b in bubbles)
        pad = line * 3
        cv2.rectangle(page, (x0 - pad, y0 - pad), (x1 + pad, y1 + pad), colour, line)
        scale = max(0.45, w / 2400)
        cv2.putText(
            page,
            name,
            (x0 - pad, max(y0 - pad * 2, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            colour,
            max(1, line // 2),
        )
    if template.markers:
        m = template.markers
        for x, y in m.positions.values():
            cv2.rectangle(page, (x - line, y - line), (x + m.size + line, y + m.size + line), MARKERS, line)
    if template.qr:
        q = template.qr
        cv2.rectangle(page, (q.x, q.y), (q.x + q.size, q.y + q.size), QR, line)
    if w > WIDTH:
        page = cv2.resize(page, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", page)
    if not ok:
        raise ValueError("the preview could not be encoded")
    return np.asarray(png).tobytes()
