"""The reader proves where each field block lies before it trusts its answers, and reads every
page a second way: a template that lands on nothing, or on the wrong place, is never `ok`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from omr_tus.omr import reader, simulate
from omr_tus.omr.crosscheck import SecondReading, largest_jump, mostly_blank_but_two_valued, read_twice
from omr_tus.omr.errors import TemplateError
from omr_tus.omr.fit import fit_blocks
from omr_tus.omr.paper import nearby_paper
from omr_tus.omr.reader import read_sheet
from omr_tus.omr.render import DARK_VALUES, render_sheet
from omr_tus.omr.template import Template

from .corpus import CLASSES

# shaped like OMRChecker's community sample of a photographed 8 x 4 grid of ellipses with digits
GRID = {
    "pageDimensions": [300, 400],
    "bubbleDimensions": [20, 20],
    "fieldBlocks": {
        "MCQBlock1": {
            "fieldType": "QTYPE_MCQ4",
            "origin": [78, 41],
            "fieldLabels": ["q21..28"],
            "bubblesGap": 56,
            "labelsGap": 46,
        }
    },
    "preProcessors": [],
}
ANSWERS = "ABCDDCBA"
PHOTO = (738, 913)


def grid_photo(answers: str = ANSWERS, offset: tuple[float, float] = (0, 0), rows: int = 8) -> np.ndarray:
    """A straight photo of the grid: ellipses with a digit inside, one per row filled solid."""
    w, h = PHOTO
    sx, sy = w / 300, h / 400
    image = np.full((h, w), 245, np.uint8)
    for i, answer in enumerate(answers[:rows]):
        for j in range(4):
            centre = (round((88 + j * 56 + offset[0]) * sx), round((51 + i * 46 + offset[1]) * sy))
            axes = (round(15 * sx), round(11 * sy))
            cv2.ellipse(image, centre, axes, 0, 0, 360, 60, 2, cv2.LINE_AA)
            cv2.putText(
                image,
                str(j + 1),
                (centre[0] - 7, centre[1] + 8),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7,
                90,
                2,
                cv2.LINE_AA,
            )
            if answer == "ABCD"[j]:
                cv2.ellipse(image, centre, axes, 0, 0, 360, 20, -1, cv2.LINE_AA)
    return image


def expected(answers: str = ANSWERS) -> dict[str, str]:
    return {f"q{21 + i}": a for i, a in enumerate(answers)}


def test_empty_preprocessors_read_the_whole_image_resized():
    """OMRChecker resizes the whole image to pageDimensions when preProcessors is []: the sheet
    lying on a dark table must not be cropped to its paper first (that misplaced every box)."""
    photo = grid_photo()
    photo[:, :60] = photo[:, 690:] = photo[:40] = photo[880:] = 50
    r = read_sheet(photo, Template.parse(GRID))
    assert r.status == "ok", r.error
    assert r.answers == expected()


def test_a_template_that_lands_on_blank_paper_fails():
    r = read_sheet(np.full(PHOTO[::-1], 245, np.uint8), Template.parse(GRID))
    assert r.status == "failed"
    assert "lands on no printed bubbles" in r.error and "MCQBlock1" in r.error


def test_a_block_on_blank_paper_sends_the_sheet_to_review_by_name():
    template = Template.parse(
        {
            **GRID,
            "fieldBlocks": {
                **GRID["fieldBlocks"],
                "Extra": {
                    "fieldType": "QTYPE_MCQ4",
                    "origin": [78, 41 + 6 * 46],
                    "fieldLabels": ["q29", "q30"],
                    "bubblesGap": 56,
                    "labelsGap": 46,
                },
            },
        }
    )
    r = read_sheet(grid_photo(rows=6), template)  # rows 7 and 8 were never printed
    assert r.status == "needs_review"
    assert "field block Extra does not fit" in r.error and "field block MCQBlock1" not in r.error
    assert {c: r.answers[c] for c in expected(ANSWERS[:6])} == expected(ANSWERS[:6])
    assert "ambiguous" in r.flags["q29"] and "ambiguous" not in r.flags["q21"]


@pytest.mark.parametrize("offset", [(5, 4), (-6, 3), (0, -5)])
def test_a_block_printed_off_its_template_position_is_moved_onto_its_print(offset):
    """Print a quarter of a bubble away from the template (paper stretch, a hand-measured
    template): the block's shift finds it and every answer reads, confidently."""
    template = Template.parse(GRID)
    page = cv2.resize(grid_photo(offset=offset), template.page, interpolation=cv2.INTER_AREA)
    fit = fit_blocks(page, template, nearby_paper(page, template.layout.boxes))
    assert not fit.unfit
    assert np.abs(np.median(fit.shifts, axis=0) - offset).max() <= 1
    r = read_sheet(grid_photo(offset=offset), template)
    assert r.status == "ok", r.error
    assert r.answers == expected()


def test_the_page_threshold_sits_in_the_first_large_jump():
    values = np.array([231, 229, 60, 232, 228, 58, 230, 61, 227, 233], float)
    threshold, jump = largest_jump(values, 2, 25, 200)
    assert 61 < threshold < 227 and jump > 150
    assert largest_jump(np.array([230, 228, 226, 231, 229.0]), 2, 25, 200) == (200, 25)  # no jump: default


def test_the_second_reading_reads_the_marks():
    template = Template.parse(GRID)
    page = cv2.resize(grid_photo(), template.page, interpolation=cv2.INTER_AREA)
    second = read_twice(
        page, template, np.zeros((32, 2), np.int64), nearby_paper(page, template.layout.boxes)
    )
    marked = ["".join("ABCD"[j] for j in range(4) if second.marked[4 * i + j]) for i in range(8)]
    assert marked == list(ANSWERS)
    assert second.two_valued and second.dark == 8


def test_where_the_two_readings_differ_the_answer_is_flagged(monkeypatch):
    """A field the second reading reads otherwise is doubtful and the sheet goes to a person."""
    real = reader.read_twice

    def disagreeing(*args):
        second = real(*args)
        marked = second.marked.copy()
        marked[4:8] = [False, False, True, False]  # q22: C instead of B
        return SecondReading(marked, second.page_threshold, second.two_valued, second.dark)

    monkeypatch.setattr(reader, "read_twice", disagreeing)
    r = read_sheet(grid_photo(), Template.parse(GRID))
    assert r.status == "needs_review"
    assert "a second reading differs: q22" in r.error
    assert r.flags["q22"] == ["ambiguous"] and all(r.flags[c] == [] for c in expected() if c != "q22")


def test_a_page_read_blank_whose_bubbles_are_two_valued_needs_review():
    two_valued = SecondReading(np.zeros(40, bool), 150.0, True, 9)
    assert "9 bubbles are clearly darker" in mostly_blank_but_two_valued(two_valued, 10, 10, 0)
    assert mostly_blank_but_two_valued(two_valued, 10, 10, 9) is None  # we read those marks
    assert mostly_blank_but_two_valued(two_valued, 5, 10, 0) is None  # most fields read
    flat = SecondReading(np.zeros(40, bool), 200.0, False, 0)
    assert mostly_blank_but_two_valued(flat, 10, 10, 0) is None  # a truly blank sheet


@pytest.mark.parametrize("name", ["ring_markers_letters_ballpoint", "int_columns_feature_alignment"])
def test_dark_letters_printed_inside_bubbles_do_not_send_sheets_to_review(name):
    """Letters printed dark inside small bubbles vary from bubble to bubble; that variation is
    print, not a doubtful mark: such sheets read right and `ok`."""
    sheet_class = next(c for c in CLASSES if c.name == name)
    for sheet in sheet_class.sheets(3, 21):
        r = read_sheet(sheet.image, sheet_class.template)
        assert r.status == "ok", r.error
        assert {c: r.answers[c] for c, v in sheet.truth.items() if v is not None} == {
            c: v for c, v in sheet.truth.items() if v is not None
        }


def test_the_second_reading_takes_its_jumps_from_the_config():
    template = Template.parse(GRID, {"threshold_params": {"MIN_JUMP": 30, "CONFIDENT_SURPLUS": 8}})
    assert (
        template.thresholds.min_jump,
        template.thresholds.confident_surplus,
        template.thresholds.min_gap,
    ) == (30, 8, 30)
    with pytest.raises(TemplateError) as bad:
        Template.parse(GRID, {"threshold_params": {"MIN_JUMP": "large"}})
    assert "config.threshold_params.MIN_JUMP" in str(bad.value)


def _gaps_scaled(raw: dict, bubbles: float, labels: float) -> dict:
    """The template as printed with every block's gaps between bubbles and between fields
    `bubbles` and `labels` times what the template says (a template measured off its print)."""
    blocks = {
        name: {**b, "bubblesGap": b["bubblesGap"] * bubbles, "labelsGap": b["labelsGap"] * labels}
        for name, b in raw["fieldBlocks"].items()
    }
    return {**raw, "fieldBlocks": blocks}


@pytest.mark.parametrize(("bubbles", "labels"), [(1.0, 1.02), (0.98, 0.98)])
def test_a_block_printed_at_another_scale_is_stretched_onto_its_print(bubbles, labels):
    """A template measured a little off its print (or an alignment whose scale is off, as an
    affine feature match of a keystoned scan leaves it): a 25-row block's last rows lie half a
    row off, which no shift of the block or of one row mends; the block is stretched onto its
    print and every answer reads, confidently."""
    raw = {
        **json.loads((Path(__file__).parent / "corpus" / "form-100q.json").read_text()),
        "preProcessors": [],
    }
    template, printed = Template.parse(raw), Template.parse(_gaps_scaled(raw, bubbles, labels))
    rng = np.random.default_rng(3)
    for _ in range(2):
        _, answers = simulate.random_answers(template, rng, 0.05, 0.0)
        answers.update({f.label: f.bubbles[int(rng.integers(len(f.bubbles)))].value for f in template.fields})
        page = render_sheet(printed, "11600111", "s", style=DARK_VALUES)
        simulate.mark_sheet(page, printed, answers, rng, simulate.EASY, simulate.PENCIL)
        r = read_sheet(page, template, qr_expected=False)
        assert r.status == "ok", r.error
        assert r.answers == simulate.column_truth(template, answers, set())


def test_a_value_printed_once_reads_when_marked_over_dark_print():
    """A bubble whose value is printed nowhere else (the roll number's "U", "HT", "GT") has no
    unmarked twin to show its print: a pencil fill over its dark letters must still read as a
    mark, not pass for heavy print (a sheet sent to review with the letter dropped)."""
    sheet_class = next(c for c in CLASSES if c.name == "int_columns_feature_alignment")
    lone = 0
    for sheet in sheet_class.sheets(9, 2026):
        r = read_sheet(sheet.image, sheet_class.template)
        assert r.status == "ok", r.error
        assert r.answers["Roll"] == sheet.truth["Roll"]
        lone += sheet.truth["Roll"][0] in "UHG"
    assert lone >= 3
