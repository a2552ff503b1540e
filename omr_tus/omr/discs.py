"""The pixels of the same ring (or disc) of every bubble of one size, gathered at once."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def _offsets(w: int, h: int, r0: float, r1: float) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of the pixels whose centres lie between radii r0 and r1 (shares of the half-size)
    of the ellipse inscribed in a w x h box, relative to the box's top-left corner."""
    reach = int(np.ceil(r1 * max(w, h) / 2)) + 1
    ys, xs = np.mgrid[-reach : h + reach, -reach : w + reach]
    r = np.hypot((xs + 0.5 - w / 2) / (w / 2), (ys + 0.5 - h / 2) / (h / 2))
    keep = (r >= r0) & (r < r1)
    return ys[keep], xs[keep]


def annulus(page: np.ndarray, boxes: np.ndarray, r0: float, r1: float) -> np.ndarray:
    """Pixels of the same annulus of every (x, y, w, h) bubble box (all of one size), shape
    (bubbles, pixels); pixels off the page repeat its edge."""
    dy, dx = _offsets(int(boxes[0, 2]), int(boxes[0, 3]), r0, r1)
    ys, xs = boxes[:, 1:2] + dy, boxes[:, 0:1] + dx
    h, w = page.shape
    if ys.min() < 0 or xs.min() < 0 or ys.max() >= h or xs.max() >= w:
        ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    return page[ys, xs]
