"""The paper's own brightness around each bubble, so that shade and uneven light cancel."""

from __future__ import annotations

import cv2
import numpy as np

REACH = 1.3  # the neighbourhood searched for paper, in bubble sizes either side


def nearby_paper(page: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The lightest level around each (x, y, w, h) box: a grey dilation wider than any bubble
    (so a bubble, a mark or print larger than the box never hides the paper), on a page shrunk
    so that the largest bubble is a few pixels, read at each box's centre."""
    side = int(boxes[:, 2:].max())
    factor = max(1, side // 6)
    small = (
        cv2.resize(page, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
        if factor > 1
        else page
    )
    reach = 2 * int(np.ceil(REACH * side / factor)) + 1
    light = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (reach, reach)))
    ys = np.clip(((boxes[:, 1] + boxes[:, 3] / 2) / factor).astype(np.intp), 0, small.shape[0] - 1)
    xs = np.clip(((boxes[:, 0] + boxes[:, 2] / 2) / factor).astype(np.intp), 0, small.shape[1] - 1)
    return np.maximum(light[ys, xs].astype(np.float64), 1)
