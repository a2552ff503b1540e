"""The classes of sheet the reader must read right or send to review (issue 13), each with
known truth: an OMRChecker-style template (tests/corpus/*.json, our own, shaped like the
templates of OMRChecker's community, sample6 and answer-key samples), how its forms are printed,
the pen that marks them and how they are captured (flatbed, copier, phone, scanner app).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from omr_tus.omr import simulate
from omr_tus.omr.render import (
    DARK_VALUES,
    OWN,
    Print,
    framed_by_markers,
    in_colour,
    printed_at,
    render_sheet,
    ring_marker,
)
from omr_tus.omr.simulate import (
    BALLPOINT,
    BLUE_INK,
    FELT_TIP,
    PENCIL,
    SCRIBBLE,
    Difficulty,
    Pen,
    SimulatedSheet,
)
from omr_tus.omr.template import Template

FOLDER = Path(__file__).resolve().parent / "corpus"
TASK = "11600111"
MARKER = 66  # printed ring-marker diameter (px on the 1275 px wide page)
MARKER_MARGIN = 60  # paper beyond the markers' centres

FLATBED = Difficulty(1.5, 0.002, (0,), (0.4, 0.8), (2, 4), (80, 92), (200,), backdrop=(235, 250))
DOCUMENT = Difficulty(3, 0.004, (0,), (0.5, 0.9), (2, 4), (75, 90), (150, 200), backdrop=(225, 245))
DARK_DESK = Difficulty(4, 0.006, (0,), (0.5, 1.0), (2, 5), (70, 90), (150, 200), backdrop=(50, 130))
PHONE = Difficulty(
    8,
    0.008,
    (0,),
    (0.8, 1.4),
    (3, 6),
    (70, 90),
    (150, 200),
    backdrop=(40, 120),
    texture=12,
    tilt=0.12,
    shadow=0.35,
)
STRAIGHT_PHOTO = Difficulty(
    0.6, 0.0, (0,), (0.6, 1.0), (2, 4), (85, 92), (200,), backdrop=(240, 250), margin=0.0
)
FADED = dataclasses.replace(DARK_DESK, contrast=(0.35, 0.5))
CROPPED_SCAN = Difficulty(
    0.3, 0.0, (0,), (0.4, 0.8), (2, 4), (80, 92), (200,), backdrop=(240, 250), margin=0.0
)
SCANNER_APP = Difficulty(
    0.0, 0.0005, (0,), (0.4, 0.7), (1, 3), (70, 85), (200,), backdrop=(245, 252), margin=0.0, enhance=True
)


@dataclass(frozen=True)
class SheetClass:
    name: str
    template_file: str
    pen: Pen
    level: Difficulty
    style: Print = DARK_VALUES
    print_size: tuple[int, int] | None = None  # the picture's size, other than pageDimensions
    desk: int = 0  # px of desk round the paper in that picture (the template counts them)
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None  # BGR print and paper

    @cached_property
    def raw(self) -> dict:
        return json.loads((FOLDER / self.template_file).read_text())

    @cached_property
    def assets(self) -> dict[str, bytes]:
        """The marker or reference image the template's preprocessors name, drawn here."""
        out = {}
        for step in self.raw.get("preProcessors", []):
            name, options = step["name"], step.get("options", {})
            if name == "CropOnMarkers":
                out[options["relativePath"]] = _png(ring_marker(MARKER))
            elif name == "FeatureBasedAlignment":
                out[options["reference"]] = _png(self._blank())
        return out

    def _blank(self) -> np.ndarray:
        """The unmarked form, as an exam office scans it once for FeatureBasedAlignment."""
        return render_sheet(self.printed, TASK, "reference", style=self.style)

    @cached_property
    def printed(self) -> Template:
        """The bubbles where the printed form has them (the template parsed without its
        preprocessors, so that drawing needs no assets)."""
        bare = Template.parse({k: v for k, v in self.raw.items() if k != "preProcessors"})
        return printed_at(bare, *self.print_size, self.desk) if self.print_size else bare

    @cached_property
    def template(self) -> Template:
        return Template.parse(self.raw, None, self.assets)

    def sheets(self, count: int, seed: int) -> Iterator[SimulatedSheet]:
        rng = np.random.default_rng(seed)
        for _ in range(count):
            yield self.sheet(rng)

    def sheet(self, rng: np.random.Generator) -> SimulatedSheet:
        """One student's sheet: ids bubbled completely, questions blank or multiple at the
        level's rates, marked with the class's pen and captured at its level."""
        student, answers = simulate.random_answers(self.template, rng, self.level.blank, self.level.multiple)
        fields = self.template.field_map()
        for parts in self.template.custom_labels.values():
            answers.update({p: str(rng.choice([b.value for b in fields[p].bubbles])) for p in parts})
        page = render_sheet(self.printed, TASK, student, style=self.style)
        if self.colours:
            page = in_colour(page, *self.colours)
        doubtful = simulate.mark_sheet(page, self.printed, answers, rng, self.level, self.pen)
        if "CropOnMarkers" in {s["name"] for s in self.raw.get("preProcessors", [])}:
            page = framed_by_markers(page, MARKER, MARKER_MARGIN)
        if self.desk:
            tone = int(rng.integers(60, 140))
            page = np.pad(
                page, ((self.desk,) * 2, (self.desk,) * 2) + ((0, 0),) * (page.ndim - 2), constant_values=tone
            )
        image = simulate.scan(page, rng, self.level)
        return SimulatedSheet(
            image, TASK, student, answers, simulate.column_truth(self.template, answers, doubtful)
        )


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


CLASSES = (
    # a clean straight photo of a small ruled grid: digits inside ellipses, solid fills, preProcessors
    # [] and pageDimensions 300x400 while the photo is 738x913
    SheetClass(
        "digits_in_ellipses_size_mismatch",
        "digits-ellipse.json",
        BALLPOINT,
        STRAIGHT_PHOTO,
        style=dataclasses.replace(DARK_VALUES, grid=True),
        print_size=(738, 913),
    ),
    # the same photo taken with the desk round the paper: OMRChecker reads the whole image as
    # the page, and the template was measured on it, desk included
    SheetClass(
        "digits_photo_with_desk_preprocessors_none",
        "digits-ellipse.json",
        BALLPOINT,
        STRAIGHT_PHOTO,
        style=dataclasses.replace(DARK_VALUES, grid=True),
        print_size=(738, 913),
        desk=36,
    ),
    # a landscape sheet of 100 questions in tiny 15x10 ellipses, no preProcessors key at all (to
    # OMRChecker the same as []: the whole image is the page), a ruled frame round the bubbles,
    # scanned at twice the template's size (within 0.3°) and cropped to the page
    SheetClass(
        "tiny_ellipses_no_preprocessors",
        "tiny-ellipses-100q.json",
        BALLPOINT,
        CROPPED_SCAN,
        style=dataclasses.replace(DARK_VALUES, grid=True),
        print_size=(1414, 968),
    ),
    # a 200-question flatbed scan: ring corner markers (CropOnMarkers), letters inside bubbles,
    # solid ballpoint fills, a QTYPE_INT roll number
    SheetClass("ring_markers_letters_ballpoint", "ring-markers-200q.json", BALLPOINT, FLATBED),
    # roll-number columns (QTYPE_INT) on a document scan aligned by FeatureBasedAlignment
    SheetClass(
        "int_columns_feature_alignment",
        "roll-feature.json",
        PENCIL,
        DOCUMENT,
        style=dataclasses.replace(DARK_VALUES, heading="ROLL NUMBER SHEET"),
    ),
    # a 100-question mock-exam form (booklet, subject code, roll) photographed at an angle:
    # keystone, uneven light, shadow, cloth behind
    SheetClass("angled_phone_photo", "mock-exam-100q.json", BALLPOINT, PHONE),
    # the same form not lying flat: its rows bow by up to 0.6 % of the picture's height
    SheetClass(
        "curled_phone_photo", "mock-exam-100q.json", BALLPOINT, dataclasses.replace(PHONE, curl=0.006)
    ),
    # grey, streaky pencil; up to two erased fills left as ghosts
    SheetClass("pencil", "form-100q.json", PENCIL, dataclasses.replace(DARK_DESK, ghosts=2), style=OWN),
    SheetClass("felt_tip", "form-100q.json", FELT_TIP, DARK_DESK),
    # hurried back-and-forth ballpoint strokes, the paper showing between them
    SheetClass("ballpoint_scribbles", "form-100q.json", SCRIBBLE, DARK_DESK),
    SheetClass(
        "blue_ink_colour",
        "form-100q.json",
        BLUE_INK,
        dataclasses.replace(PHONE, tilt=0.06),
        colours=((20, 20, 20), (225, 245, 252)),
    ),
    # a form printed in red drop-out ink, marked in black ballpoint, scanned in colour
    SheetClass(
        "red_dropout_form", "form-100q.json", BALLPOINT, DARK_DESK, colours=((70, 60, 215), (248, 250, 252))
    ),
    SheetClass("low_contrast", "form-100q.json", PENCIL, FADED),
    # a phone's document-scanner app: the page cropped to its edges, whitened, sharpened; 15 px
    # bubbles, a 7-digit booklet number whose empty value is "no", GaussianBlur only
    SheetClass("scanner_app_small_bubbles", "booklet-200q.json", PENCIL, SCANNER_APP, style=OWN),
    # 25 % blank, 15 % double marks, and on half the sheets a tick or slash the reader must flag
    SheetClass(
        "multiple_marks_ticks_and_blanks",
        "form-100q.json",
        BALLPOINT,
        dataclasses.replace(DARK_DESK, blank=0.25, multiple=0.15, ticks=0.5),
    ),
)


@dataclass
class Tally:
    """One class's reading against its truth. An answer counts right only if read equal to the
    truth; a failed sheet's answers count as not right. A column whose truth is None (a tick)
    must be flagged: on a sheet called `ok` it counts as a wrong answer; it is not an answer."""

    sheets: int = 0
    review: int = 0
    failed: int = 0
    answers: int = 0
    right: int = 0
    wrong_on_ok: int = 0
    seconds: float = 0.0  # spent reading (the bench times it)
    examples: list[str] = dataclasses.field(default_factory=list)  # the first wrong readings

    def add(self, sheet: SimulatedSheet, result) -> None:
        self.sheets += 1
        self.review += result.status == "needs_review"
        self.failed += result.status == "failed"
        for column, truth in sheet.truth.items():
            if truth is None:
                self.wrong_on_ok += result.status == "ok"
                continue
            self.answers += 1
            got = result.answers.get(column) if result.status != "failed" else None
            self.right += got == truth
            self.wrong_on_ok += result.status == "ok" and got != truth
            if got != truth and len(self.examples) < 5:
                self.examples.append(
                    f"sheet {self.sheets} {column}: {truth!r} read {got!r} ({result.status}: "
                    f"{(result.error or '')[:60]})"
                )

    @property
    def right_share(self) -> float:
        return self.right / self.answers if self.answers else 0.0

    @property
    def review_share(self) -> float:
        return (self.review + self.failed) / self.sheets if self.sheets else 0.0
