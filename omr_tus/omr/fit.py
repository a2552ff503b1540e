"""Where each field block really lies on the aligned page, and proof that it lies on print.

Alignment maps the page as a whole; a block can still sit a few pixels off its print (paper
stretch, a template measured by hand, a photo's lens). Each block is moved, as OMRChecker's
per-block shifts do, to where its bubbles' print is centred in their boxes: every printed
bubble style (outline, letter or digit inside, grey or solid disc, a mark) is symmetric about
its centre, so the darkness-weighted centre of a window around each box points at the print
whatever the box size is; then each field moves a little further on its own. A block fits
when its windows hold print and its bubbles sit on it; a block whose boxes land on blank paper
or on unrelated print does not, and its answers are not trusted. A block that does not fit
where the template puts it is looked for again where the blocks that fit say it lies.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .template import Template

WINDOW = 0.8  # half-window around a box, as a share of its size (less where neighbours are close)
REACH = 0.5  # ... and at most this share of the pitch to the next bubble
ROUNDS = 4  # centring iterations
MAX_SHIFT = 0.6  # a block moves at most this share of its bubble size ...
MAX_SHIFT_PITCH = 0.4  # ... and of its pitch, so it never locks onto the neighbouring bubble
WORK_SIDE = 10  # px of the smaller bubble side at which the search runs (the page is shrunk to it)
INK = 0.06  # a window holds print where its darkness adds up to a twentieth of it this much darker
STRUCTURE = 0.035  # darkness of the print common to a block's windows for it to be on print
FIELD_MIN = 3  # bubbles a field needs to be moved on its own ...
FIELD_SHIFT = 0.2  # ... by at most this share of the bubble size beyond its block's shift,
FIELD_GAP = 0.5  # ... and this share of the paper between bubbles (none where they touch)
SCATTER_MIN = 5  # bubbles (clearly printed ones) needed to move a block (to judge their scatter)
BLANK_PAPER = "its boxes lie on blank paper"
SPREAD = 0.2  # bubbles' own centres may scatter this share of the bubble size (median)
STRETCH_SPAN = 4  # bubble sizes a block must span along an axis to be stretched along it ...
MAX_STRETCH = 0.05  # ... by at most this share (scale or turn)
STRETCH_ROUNDS = 8  # centring iterations of a block (its far rows may start half a row off)
STRETCH_REACH = 0.35  # ... its windows reaching this share of the pitch (never a whole period)
STRETCH_HINT = 0.1  # ... tried where the print drifts this share of the bubble size along it
SHARPER = 0.01  # ... kept stretched only where its common print is this much darker


@dataclass(frozen=True)
class Fit:
    shifts: np.ndarray  # (bubbles, 2) whole-pixel (dx, dy) of each bubble's box on the page
    unfit: dict[str, str]  # block name -> why it does not land on print

    def moved(self, template: Template) -> float:
        """How far the bubbles had to move onto their print, in bubble sizes (mean)."""
        return float(np.mean(np.hypot(*self.shifts.T) / template.layout.boxes[:, 2:].min(1)))


@lru_cache(maxsize=64)
def _grid(hx: int, hy: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[-hy : hy + 1, -hx : hx + 1]
    return ys.ravel(), xs.ravel()


def fit_blocks(page: np.ndarray, template: Template, paper: np.ndarray) -> Fit:
    """Each bubble's shift on `page` (the aligned canonical page) and the blocks that do not fit;
    `paper` is the paper's level around each bubble. A page cropped or matched a little wrong
    moves every block along one smooth map, so a block too small to be moved on its own (a
    lone column of a few bubbles) is searched where the blocks that fit say it lies, and so is
    a block that does not fit where the template puts it."""
    search = _Search(page, template, paper)
    count = np.bincount(search.layout.block, minlength=len(search.names))
    large = [i for i in range(len(search.names)) if count[i] >= SCATTER_MIN]
    found = {i: search.block(i, np.zeros(2)) for i in large}
    fitted = [i for i in large if found[i][1] is None]
    expected = search.predict(fitted, [found[i][0] for i in fitted])
    for i in range(len(search.names)):
        if i not in found:
            found[i] = search.block(i, expected[i])
        elif (why := found[i][1]) is not None and fitted and not why.startswith(BLANK_PAPER):
            again = search.block(i, expected[i])
            found[i] = again if again[1] is None else found[i]
    shifts = np.zeros((len(template.layout.block), 2))
    unfit = {}
    for i, (offsets, why) in sorted(found.items()):
        if why is None:
            shifts[search.layout.block == i] = offsets
        else:
            unfit[search.names[i]] = why
    return Fit(np.rint(shifts * search.factor).astype(np.int64), unfit)


class _Search:
    """One page shrunk for the search, and the template's geometry at that scale."""

    def __init__(self, page: np.ndarray, template: Template, paper: np.ndarray):
        lay = self.layout = template.layout
        self.names = lay.names
        self.factor = max(1.0, float(lay.boxes[:, 2:].min()) / WORK_SIDE)
        self.work = (
            page
            if self.factor == 1
            else cv2.resize(page, None, fx=1 / self.factor, fy=1 / self.factor, interpolation=cv2.INTER_AREA)
        )
        self.paper = paper.astype(np.float32)
        self.centres = (lay.boxes[:, :2] + lay.boxes[:, 2:] / 2) / self.factor - 0.5
        self.half = np.maximum(
            np.rint(np.minimum(WINDOW * lay.size, REACH * lay.pitch) / self.factor), 1
        ).astype(int)
        self.narrow = np.maximum(
            np.rint(np.minimum(WINDOW * lay.size, STRETCH_REACH * lay.pitch) / self.factor), 1
        ).astype(int)
        self.limit = np.minimum(MAX_SHIFT * lay.size, MAX_SHIFT_PITCH * lay.pitch) / self.factor
        self.field_reach = (
            np.minimum(FIELD_SHIFT * lay.size, FIELD_GAP * np.maximum(lay.pitch - lay.size, 0)) / self.factor
        )

    def block(self, i: int, start: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Block i's bubble offsets (work pixels) searched from `start`, and why it does not fit.
        The block is moved as one, then each field on its own, then stretched where that
        leaves it off its print."""
        mine = self.layout.block == i
        centres, paper = self.centres[mine], self.paper[mine]
        dy, dx = _grid(*self.half[i])
        movable = mine.sum() >= SCATTER_MIN  # too few bubbles to move on
        reach = self.limit[i] if movable else np.zeros(2)
        whole = np.repeat(start[None, :], len(centres), axis=0)
        per_bubble, _ = _refine(self.work, centres, paper, dy, dx, whole, len(centres), reach)  # as one
        offset = per_bubble[0]
        per_bubble, strained = self._fields(i, centres, paper, dy, dx, per_bubble)
        span = movable & (np.ptp(centres, axis=0) >= STRETCH_SPAN * self.layout.size[i] / self.factor)
        if span.any():
            better = self._stretched(i, centres, paper, per_bubble, strained, (start, reach), span)
            if better is not None:
                per_bubble, offset = better
        strength, spread = _settled(self.work, centres + per_bubble, paper, dy, dx)
        size = self.layout.size[i].min() / self.factor
        if strength < STRUCTURE:
            return per_bubble, BLANK_PAPER
        if spread is not None and spread > SPREAD * size:
            return (
                per_bubble,
                f"its boxes do not sit on printed bubbles (scatter {spread * self.factor:.1f} px)",
            )
        if movable and (np.abs(offset - start) >= reach - 0.5 / self.factor).any():
            far = np.hypot(*(np.abs(start) + reach)) * self.factor
            return per_bubble, f"lies {far:.0f} px or more off where the template puts it"
        return per_bubble, None

    def _stretched(
        self,
        i: int,
        centres: np.ndarray,
        paper: np.ndarray,
        placed: np.ndarray,
        strained: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray],
        span: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Block i stretched onto its print from where it was `placed`, where its fields could
        not follow their print (`strained`) or its print still drifts along it, if its print
        then lines up better (each bubble's offset, and the offset at its middle); else None."""
        ny, nx = _grid(*self.narrow[i])
        design = _design(centres, span)
        pixels, snap = _windows(self.work, centres + placed, ny, nx)
        own, ink = _centroids(pixels, paper, ny, nx)
        drift = np.abs(design[:, 1:] @ _robust_fit(design, own + snap, ink >= INK)[1:]).max()
        if not strained.any() and drift < STRETCH_HINT * self.layout.size[i].min() / self.factor:
            return None
        first = _robust_fit(design, placed, ~strained)
        stretched, middle = _stretch(self.work, centres, paper, ny, nx, first, bounds, span)
        stretched, _ = self._fields(i, centres, paper, *_grid(*self.half[i]), stretched)
        sharper = _common_print(self.work, centres + stretched, paper, ny, nx) - _common_print(
            self.work, centres + placed, paper, ny, nx
        )
        return (stretched, middle) if sharper > SHARPER else None

    def _fields(
        self,
        i: int,
        centres: np.ndarray,
        paper: np.ndarray,
        dy: np.ndarray,
        dx: np.ndarray,
        start: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each field of block i moved a little further onto its own print, and the bubbles of
        fields that had to move as far as they may (the block's map is off by more than a shift
        can mend)."""
        if self.layout.fields[i] < FIELD_MIN:
            return start, np.zeros(len(start), bool)
        return _refine(self.work, centres, paper, dy, dx, start, self.layout.fields[i], self.field_reach[i])

    def predict(self, fitted: list[int], offsets: list[np.ndarray]) -> np.ndarray:
        """Every block's offset as the affine map through the fitted blocks' offsets has it
        (their mean where too few blocks fit to tell more, none where none fit)."""
        where = np.array([self.centres[self.layout.block == i].mean(0) for i in range(len(self.names))])
        if not fitted:
            return np.zeros_like(where)
        mean = np.array([o.mean(0) for o in offsets])
        if len(fitted) < 3:
            return np.repeat(mean.mean(0)[None, :], len(self.names), axis=0)
        where = where - where[fitted].mean(0)  # centred: a line of blocks tells nothing across it
        design = np.hstack([where[fitted], np.ones((len(fitted), 1))])
        coef, *_ = np.linalg.lstsq(design, mean, rcond=None)
        return np.hstack([where, np.ones((len(where), 1))]) @ coef


def _design(centres: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Columns of an affine map of the bubbles' offsets: a constant, and the position along
    each of `axes` from the block's middle."""
    return np.hstack([np.ones((len(centres), 1)), (centres - centres.mean(0))[:, axes]])


def _stretch(
    work: np.ndarray,
    centres: np.ndarray,
    paper: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    first: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    axes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The block moved (within `bounds`: reach of a start) and stretched or turned a little
    along the `axes` it spans, from the map `first` (fitted to the fields that could follow
    their print), to where its bubbles' print is centred: an alignment whose scale is a few per
    cent off (a feature match, an affine map of a keystoned scan, a template measured a little
    off its print) leaves a long block's far rows half a row off, which no shift mends.
    Returns each bubble's offset and the offset at the block's middle."""
    design = _design(centres, axes)
    start, reach = bounds

    def bounded(coef: np.ndarray) -> np.ndarray:
        return np.vstack(
            [np.clip(coef[0], start - reach, start + reach), np.clip(coef[1:], -MAX_STRETCH, MAX_STRETCH)]
        )

    coef = bounded(first)
    for _ in range(STRETCH_ROUNDS):
        model = design @ coef
        pixels, snap = _windows(work, centres + model, dy, dx)
        own, ink = _centroids(pixels, paper, dy, dx)
        new = bounded(_robust_fit(design, model + own + snap, ink >= INK))
        done = np.abs(design @ (new - coef)).max() < 0.25
        coef = new
        if done:
            break
    return design @ coef, coef[0]


def _robust_fit(design: np.ndarray, target: np.ndarray, printed: np.ndarray) -> np.ndarray:
    """Least squares of `target` on `design` over the bubbles that show print, fitted again
    without those far off the first fit (a mark drawn off-centre, a ruled line beside a box)."""
    use = printed if printed.sum() >= max(SCATTER_MIN, design.shape[1] * 2) else np.ones(len(target), bool)
    for _ in range(2):
        coef = np.linalg.lstsq(design[use], target[use], rcond=None)[0]
        miss = np.hypot(*(target - design @ coef).T)
        use = use & (miss <= max(2 * float(np.median(miss[use])), 0.5))
        if use.sum() < design.shape[1] * 2:
            break
    return coef


def _refine(
    work: np.ndarray,
    centres: np.ndarray,
    paper: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    start: np.ndarray,
    size: int,
    reach: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each field (a run of `size` bubbles) moved within `reach` of the bubbles' offsets `start`
    to where its bubbles' print is centred (their median), so a page that bends or a lens that
    curves does not leave a block's far rows off their print; returns each bubble's offset, and
    which bubbles' fields ended as far as they may move."""
    fields = len(centres) // size
    move = np.zeros((fields, 2))
    for _ in range(ROUNDS):
        pixels, snap = _windows(work, centres + start + np.repeat(move, size, axis=0), dy, dx)
        own = (_centroids(pixels, paper, dy, dx)[0] + snap).reshape(fields, size, 2)
        new = np.clip(move + np.median(own, axis=1), -reach, reach)
        done = np.abs(new - move).max() < 0.25
        move = new
        if done:
            break
    if fields >= 3:  # a field moves with its neighbours: a ruled line or a desk edge pulls one alone
        window = np.clip(np.arange(fields) - 1, 0, fields - 3)[:, None] + np.arange(3)
        move = np.median(move[window], axis=1)
    strained = (np.abs(move) >= reach - 0.25).any(1) & (reach > 0).any()
    return start + np.repeat(move, size, axis=0), np.repeat(strained, size)


def _settled(
    work: np.ndarray, centres: np.ndarray, paper: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> tuple[float, float | None]:
    """(darkness of the print common to the windows, median distance of the bubbles' own print
    centres from where they now sit, None where too few windows hold print clearly to tell).
    Averaging the windows cancels paper grain and keeps the print they share, so even faint or
    blurred print shows, and blank paper does not."""
    pixels, snap = _windows(work, centres, dy, dx)
    strength = 1 - float(np.percentile((pixels / paper[:, None]).mean(0), 2))
    own, ink = _centroids(pixels, paper, dy, dx)
    printed = ink >= INK
    if printed.sum() < max(SCATTER_MIN, len(printed) // 2):
        return strength, None
    return strength, float(np.median(np.hypot(*(own + snap)[printed].T)))


def _common_print(
    work: np.ndarray, centres: np.ndarray, paper: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> float:
    """How dark the print is that the windows share, as their median sees it (marks, which are
    few, do not count): the sharper it is, the better the boxes line up with their bubbles."""
    pixels, _ = _windows(work, centres, dy, dx)
    return 1 - float(np.percentile(np.median(pixels / paper[:, None], axis=0), 2))


def _windows(
    work: np.ndarray, centres: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of the window around each (whole-pixel) centre, and each centre's rounding."""
    h, w = work.shape
    whole = np.rint(centres)
    ys = np.clip(whole[:, 1:2] + dy, 0, h - 1).astype(np.intp)
    xs = np.clip(whole[:, 0:1] + dx, 0, w - 1).astype(np.intp)
    return work[ys, xs].astype(np.float32), whole - centres


def _centroids(
    pixels: np.ndarray, paper: np.ndarray, dy: np.ndarray, dx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Darkness-weighted centre of each window relative to its middle, and how much print the
    window holds (its darkness summed, in units of a twentieth of the window fully dark)."""
    weight = np.clip(paper[:, None] * (1 - INK / 2) - pixels, 0, None)
    total = weight.sum(1)
    centre = np.stack([weight @ dx, weight @ dy], 1) / np.maximum(total, 1e-9)[:, None]
    return centre, total / (paper * pixels.shape[1] / 20)
