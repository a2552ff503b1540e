"""Issue 13's corpus: each class of sheet (tests/corpus.py) read against its truth. A class
passes when at least 99.95 % of its answers are read right and no sheet the reader calls `ok`
holds a wrong answer; the review rate is reported (bench/omr_corpus.py measures more sheets)."""

from __future__ import annotations

import pytest

from omr_tus.omr.reader import read_sheet
from tests.corpus import CLASSES, Tally

SHEETS = 5
SEED = 13


@pytest.mark.parametrize("sheet_class", CLASSES, ids=[c.name for c in CLASSES])
def test_corpus_class(sheet_class, record_property):
    tally = Tally()
    for sheet in sheet_class.sheets(SHEETS, SEED):
        tally.add(sheet, read_sheet(sheet.image, sheet_class.template))
    record_property("review_rate", tally.review_share)
    print(
        f"{sheet_class.name}: {tally.right}/{tally.answers} right, {tally.wrong_on_ok} wrong on ok, "
        f"review {tally.review_share:.0%}"
    )
    summary = f"{tally.right}/{tally.answers} right, review {tally.review_share:.0%}; " + "; ".join(
        tally.examples
    )
    assert tally.wrong_on_ok == 0, summary
    assert tally.right_share >= 0.9995, summary


def test_corpus_sheets_are_reproducible():
    photo = next(c for c in CLASSES if c.name == "angled_phone_photo")
    a, b = (next(photo.sheets(1, 5)) for _ in range(2))
    assert a.truth == b.truth and (a.image == b.image).all()
