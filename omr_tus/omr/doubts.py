"""Marks that are neither a fill nor nothing, which a reader must not pass off as a blank: a
ring drawn round an empty bubble (a student circling an answer instead of filling it), and a
light but full fill in a question with no other mark (a light pencil among dark ones, or an
answer half erased). Either makes its question doubtful, for a person to look at. A light
fill beside a clear mark in the same question is an erased first choice and reads as blank.
"""

from __future__ import annotations

import numpy as np

from .discs import annulus
from .template import Template

RING_IN = 1.35  # annulus round a bubble where a drawn ring lies, in half-sizes (past the print) ...
RING_OUT = 1.9  # ... out to here,
RING_CLEAR = 1.4  # ... but this far short of the next bubble's centre (its mark may spill over)
RING_WIDTH = 0.25  # narrowest annulus worth measuring (a tight grid leaves no room for rings)
RING_DARK = 0.15  # darkness a ring adds to that annulus over its kind's and its field's
KIND_MIN = 3  # bubbles printed alike needed to tell what their surroundings show unmarked
LIGHT = 0.045  # darkness over print, in units of the sheet's marks, of a light fill ...
LIGHT_NOISE = 3.0  # ... and this many times what most unmarked bubbles show (a photo's grain)


def group_median(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each value's group's (lower) median, for every value at once."""
    order = np.lexsort((values, groups))
    _, starts, inverse, counts = np.unique(
        groups[order], return_index=True, return_inverse=True, return_counts=True
    )
    out = np.empty_like(values)
    out[order] = values[order][starts + (counts - 1) // 2][inverse]
    return out


def ringed(
    page: np.ndarray,
    template: Template,
    boxes: np.ndarray,
    paper: np.ndarray,
    kinds: np.ndarray,
    field: np.ndarray,
) -> np.ndarray:
    """Bubbles with a ring drawn round them: the annulus just outside the print is darker than
    round the bubbles printed alike (same surroundings: labels, rules) and than round the rest
    of its field (a rule under a whole row). `boxes` are where the bubbles were read, `paper`
    the paper level round each, `field` each bubble's field number."""
    lay = template.layout
    reach = np.minimum(RING_OUT, (lay.pitch / (lay.size / 2)).min(1) - RING_CLEAR)[lay.block]
    dark = np.zeros(len(boxes))
    measured = reach >= RING_IN + RING_WIDTH
    keys = np.column_stack([boxes[:, 2:], reach])
    for key in np.unique(keys[measured], axis=0):
        idx = np.flatnonzero((keys == key).all(1))
        dark[idx] = 1 - annulus(page, boxes[idx], RING_IN, key[2]).mean(1) / paper[idx]
    alike = np.bincount(kinds)[kinds] >= KIND_MIN
    excess = dark - group_median(dark, kinds)
    excess = excess - group_median(excess, field)
    return measured & alike & (excess >= RING_DARK)


def light_fills(
    added: np.ndarray, fill: np.ndarray, field: np.ndarray, blank: float, marked: float
) -> np.ndarray:
    """Bubbles read blank that hold a light but full fill, in a question with no clear mark:
    `added` is the darkness each adds over its print in units of the sheet's marks, `fill` how
    much of it is marked (read blank below `blank`, marked from `marked`)."""
    unmarked = fill < blank
    floor = max(LIGHT, LIGHT_NOISE * float(np.percentile(added[unmarked], 90))) if unmarked.any() else LIGHT
    answered = np.bincount(field, weights=fill >= marked).astype(bool)[field]
    return unmarked & (added >= floor) & ~answered
