"""Issue 13's one rule on sheets from outside the corpus (tests/adversary/ideas.py: our own
templates, odd marks, damaged paper, wrong geometry and formats): a sheet comes back right, or
goes to review / fails — never `ok` with an answer off the truth or an unflagged doubtful mark."""

from __future__ import annotations

import numpy as np
import pytest

from omr_tus.omr.reader import read_sheet
from tests.adversary.harness import wrong_on_ok
from tests.adversary.ideas import IDEAS

SHEETS = 2
# Reproduced confidently-wrong readings of the reader at the time of writing (see
# /work/wt/notes/omr.md): kept as expected failures until the reader sends them to review.
KNOWN = {
    "very_light_some": (7, 1, "light but full pencil fills read blank on an ok sheet"),
    "light_some_015_022": (7, 3, "light but full pencil fills read blank on an ok sheet"),
    "circled": (7, 1, "a ring round an empty bubble read as a blank question on an ok sheet"),
}


def _case(idea):
    if idea in KNOWN:
        return pytest.param(idea, KNOWN[idea], marks=pytest.mark.xfail(reason=KNOWN[idea][2], strict=False))
    return pytest.param(idea, (2026, SHEETS, ""))


@pytest.mark.parametrize(("idea", "run"), [_case(i) for i in sorted(IDEAS)])
def test_never_ok_and_wrong(idea, run):
    seed, count, _ = run
    rng = np.random.default_rng(seed)
    for _ in range(count):
        image, template, truth = IDEAS[idea](rng)
        result = read_sheet(image, template, qr_expected=False)
        assert not wrong_on_ok(result, truth), (result.status, result.error)
