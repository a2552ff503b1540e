"""Where each field block really lies on the aligned page, and proof that it lies on print.

Alignment maps the page as a whole; a block can still sit a few pixels off its print (paper
stretch, a template measured by hand, a photo's lens). Each block is moved, as OMRChecker's
per-block shifts do, to where its bubbles' print is centred in their boxes: every printed
bubble style (outline, letter or digit inside, grey or solid disc, a mark) is symmetric about
its centre, so the darkness-weighted centre of a window around each box points at the print
whatever the box size is. A block fits when its windows hold print and their centres agree;
a block whose boxes land on blank paper or on unrelated print does not, and its answers are
not trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .template import Template

WINDOW = 0.8          # half-window around a box, as a share of its size (less where neighbours are close)
REACH = 0.5           # ... and at most this share of the pitch to the next bubble
ROUNDS = 4            # centring iterations
MAX_SHIFT = 0.6       # a block moves at most this share of its bubble size ...
MAX_SHIFT_PITCH = 0.4  # ... and of its pitch, so it never locks onto the neighbouring bubble
WORK_SIDE = 10        # px of the smaller bubble side at which the search runs (the page is shrunk to it)
INK = 0.06            # a window holds print where its darkness adds up to a twentieth of it this much darker
STRUCTURE = 0.035     # darkness of the print common to a block's windows for it to be on print
FIELD_MIN = 3         # bubbles a field needs to be moved on its own ...
FIELD_SHIFT = 0.2     # ... by at most this share of the bubble size beyond its block's shift,
FIELD_GAP = 0.5       # ... and this share of the paper between bubbles (none where they touch)
SCATTER_MIN = 5       # bubbles (clearly printed ones) needed to move a block (to judge their scatter)
SPREAD = 0.2          # bubbles' own centres may scatter this share of the bubble size (median)


@dataclass(frozen=True)
class Fit:
    shifts: np.ndarray            # (bubbles, 2) whole-pixel (dx, dy) of each bubble's box on the page
    unfit: dict[str, str]         # block name -> why it does not land on print


@lru_cache(maxsize=64)
def _grid(hx: int, hy: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[-hy:hy + 1, -hx:hx + 1]
    return ys.ravel(), xs.ravel()


def fit_blocks(page: np.ndarray, template: Template, paper: np.ndarray) -> Fit:
    """Each block's shift on `page` (the aligned canonical page) and the blocks that do not fit;
    `paper` is the paper's level around each bubble."""
    lay = template.layout
    factor = max(1, int(lay.boxes[:, 2:].min() / WORK_SIDE))
    work = page if factor == 1 else cv2.resize(page, None, fx=1 / factor, fy=1 / factor,
                                               interpolation=cv2.INTER_AREA)
    centres = (lay.boxes[:, :2] + lay.boxes[:, 2:] / 2) / factor - 0.5
    half = np.maximum(np.rint(np.minimum(WINDOW * lay.size, REACH * lay.pitch) / factor), 1).astype(int)
    limit = np.minimum(MAX_SHIFT * lay.size, MAX_SHIFT_PITCH * lay.pitch) / factor
    shift = np.zeros((len(lay.names), 2))
    unfit: dict[str, str] = {}
    for i, name in enumerate(lay.names):
        mine = lay.block == i
        reach = limit[i] if mine.sum() >= SCATTER_MIN else np.zeros(2)   # too few bubbles to move on
        shift[i], strength, spread = _centre(work, centres[mine], paper[mine].astype(np.float32), *half[i], reach)
        if strength < STRUCTURE:
            unfit[name] = "its boxes lie on blank paper"
        elif spread is not None and spread > SPREAD * lay.size[i].min() / factor:
            unfit[name] = f"its boxes do not sit on printed bubbles (scatter {spread * factor:.1f} px)"
        elif reach.any() and (np.abs(shift[i]) >= limit[i] - 0.5 / factor).any():
            unfit[name] = f"lies {np.hypot(*limit[i]) * factor:.0f} px or more off where the template puts it"
            shift[i] = 0
    per_bubble = shift[lay.block]
    field_reach = np.minimum(FIELD_SHIFT * lay.size, FIELD_GAP * np.maximum(lay.pitch - lay.size, 0)) / factor
    for i, name in enumerate(lay.names):
        mine = lay.block == i
        if name in unfit:
            per_bubble[mine] = 0
        elif lay.fields[i] >= FIELD_MIN:
            dy, dx = _grid(*half[i])
            per_bubble[mine] = _refine(work, centres[mine], paper[mine].astype(np.float32), dy, dx,
                                       shift[i], lay.fields[i], field_reach[i])
    return Fit(np.rint(per_bubble * factor).astype(np.int64), unfit)


def _refine(work: np.ndarray, centres: np.ndarray, paper: np.ndarray, dy: np.ndarray, dx: np.ndarray,
            start: np.ndarray, size: int, reach: np.ndarray) -> np.ndarray:
    """Each field of a block (its `size` bubbles in a row, in order) moved a little further on
    its own, so a page that bends or a lens that curves does not leave the block's far rows off
    their print; returns each bubble's offset."""
    fields = len(centres) // size
    offset = np.repeat(start[None, :], fields, axis=0)
    for _ in range(ROUNDS):
        pixels, snap = _windows(work, centres + np.repeat(offset, size, axis=0), dy, dx)
        own = (_centroids(pixels, paper, dy, dx)[0] + snap).reshape(fields, size, 2)
        new = np.clip(offset + np.median(own, axis=1), start - reach, start + reach)
        done = np.abs(new - offset).max() < 0.25
        offset = new
        if done:
            break
    return np.repeat(offset, size, axis=0)


def _centre(work: np.ndarray, centres: np.ndarray, paper: np.ndarray, hx: int, hy: int, limit: np.ndarray
            ) -> tuple[np.ndarray, float, float | None]:
    """(block offset, darkness of the print common to its windows, median scatter of the
    bubbles' own centres, None where too few windows hold print clearly to tell). Averaging
    the windows cancels paper grain and keeps the print they share, so even faint or blurred
    print shows, and blank paper does not."""
    dy, dx = _grid(hx, hy)
    offset = np.zeros(2)
    for _ in range(ROUNDS):
        pixels, snap = _windows(work, centres + offset, dy, dx)
        own = _centroids(pixels, paper, dy, dx)[0] + snap
        new = np.clip(offset + np.median(own, axis=0), -limit, limit)
        done = np.abs(new - offset).max() < 0.25
        offset = new
        if done:
            break
    pixels, snap = _windows(work, centres + offset, dy, dx)
    strength = 1 - float(np.percentile((pixels / paper[:, None]).mean(0), 2))
    own, ink = _centroids(pixels, paper, dy, dx)
    printed = ink >= INK
    if printed.sum() < max(SCATTER_MIN, len(printed) // 2):
        return offset, strength, None
    own = (own + snap)[printed]
    return offset, strength, float(np.median(np.hypot(*(own - np.median(own, axis=0)).T)))


def _windows(work: np.ndarray, centres: np.ndarray, dy: np.ndarray, dx: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the window around each (whole-pixel) centre, and each centre's rounding."""
    h, w = work.shape
    whole = np.rint(centres)
    ys = np.clip(whole[:, 1:2] + dy, 0, h - 1).astype(np.intp)
    xs = np.clip(whole[:, 0:1] + dx, 0, w - 1).astype(np.intp)
    return work[ys, xs].astype(np.float32), whole - centres


def _centroids(pixels: np.ndarray, paper: np.ndarray, dy: np.ndarray, dx: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Darkness-weighted centre of each window relative to its middle, and how much print the
    window holds (its darkness summed, in units of a twentieth of the window fully dark)."""
    weight = np.clip(paper[:, None] * (1 - INK / 2) - pixels, 0, None)
    total = weight.sum(1)
    centre = np.stack([weight @ dx, weight @ dy], 1) / np.maximum(total, 1e-9)[:, None]
    return centre, total / (paper * pixels.shape[1] / 20)
