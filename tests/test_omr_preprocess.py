"""OMRChecker's preprocessors: bad options name their key, and each alignment step, given a
photo of a rendered sheet taken at an angle, brings the bubbles back where the template has
them (the answers read are the ones drawn)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest

from omr_tus.omr.preprocess import Levels
from omr_tus.omr.reader import read_sheet
from omr_tus.omr.render import render_sheet
from omr_tus.omr.template import Template, TemplateError

PAGE = (600, 800)
SHEET = {
    "pageDimensions": list(PAGE),
    "bubbleDimensions": [30, 30],
    "fieldBlocks": {
        "Mcq": {
            "fieldType": "QTYPE_MCQ5",
            "fieldLabels": ["q1..8"],
            "origin": [150, 160],
            "bubblesGap": 60,
            "labelsGap": 70,
        }
    },
}
ANSWERS = {"q1": "B", "q2": "", "q3": "AE", "q4": "D", "q5": "C", "q6": "A", "q7": "E", "q8": "B"}


def encoded(image: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def with_steps(*steps: dict) -> dict:
    data = copy.deepcopy(SHEET)
    data["preProcessors"] = list(steps)
    return data


def marker_image(side: int = 60) -> np.ndarray:
    """Concentric rings, as OMRChecker's sample marker."""
    m = np.full((side, side), 255, np.uint8)
    for r, color in ((side // 2 - 1, 0), (side // 3, 255), (side // 5, 0)):
        cv2.circle(m, (side // 2, side // 2), r, color, -1)
    return m


def photo(sheet: np.ndarray, seed: int, background: int = 35, tilt: float = 0.05) -> np.ndarray:
    """The sheet lying on a dark table, shot from a slight angle, with some blur and noise."""
    rng = np.random.default_rng(seed)
    h, w = sheet.shape
    canvas = (int(w * 1.4), int(h * 1.3))
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-tilt, tilt, (4, 2)) * [w, h]
    target = corners + np.float32([w * 0.2, h * 0.15]) + jitter.astype(np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target.astype(np.float32))
    shot = cv2.warpPerspective(sheet, matrix, canvas, borderValue=background)
    shot = cv2.GaussianBlur(shot, (0, 0), 1.0)
    return np.clip(shot + rng.normal(0, 3, shot.shape), 0, 255).astype(np.uint8)


def rendered() -> np.ndarray:
    return render_sheet(Template.parse(SHEET), "11600111", "1", ANSWERS)


def assert_reads(image: np.ndarray, template: Template) -> None:
    r = read_sheet(image, template)
    assert r.status == "ok", r.error
    assert r.answers == ANSWERS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crop_page_finds_the_sheet_on_a_dark_table(seed):
    template = Template.parse(
        with_steps(
            {"name": "GaussianBlur", "options": {"kSize": [3, 3]}},
            {"name": "CropPage", "options": {"morphKernel": [10, 10]}},
        )
    )
    assert_reads(photo(rendered(), seed), template)


@pytest.mark.parametrize("seed", [4, 5])
def test_crop_on_markers_maps_marker_centres_to_the_page_corners(seed):
    """The template's page runs between the centres of four markers printed round it."""
    side, margin = 60, 80
    content = rendered()
    sheet = np.full((PAGE[1] + 2 * margin, PAGE[0] + 2 * margin), 255, np.uint8)
    sheet[margin : margin + PAGE[1], margin : margin + PAGE[0]] = content
    for x in (margin, margin + PAGE[0]):
        for y in (margin, margin + PAGE[1]):
            sheet[y - side // 2 : y + side // 2, x - side // 2 : x + side // 2] = marker_image(side)
    ratio = round(sheet.shape[1] * 1.4 / side)  # the photo's width in markers: the sheet fills ~70 %
    data = with_steps(
        {
            "name": "CropOnMarkers",
            "options": {"relativePath": "marks/omr_marker.jpg", "sheetToMarkerWidthRatio": ratio},
        }
    )
    template = Template.parse(data, None, {"marks/omr_marker.jpg": encoded(marker_image(side), ".jpg")})
    assert_reads(photo(sheet, seed, background=200, tilt=0.03), template)


def test_crop_on_markers_fails_without_markers():
    data = with_steps({"name": "CropOnMarkers", "options": {"relativePath": "m.png"}})
    template = Template.parse(data, None, {"m.png": encoded(marker_image())})
    r = read_sheet(photo(rendered(), 6), template)
    assert r.status == "failed" and "CropOnMarkers" in r.error


@pytest.mark.parametrize("affine", [False, True])
def test_feature_based_alignment_matches_the_reference(affine):
    """The reference is the blank sheet; a filled one, moved and turned a little, is mapped
    onto it. A perspective shot needs the homography; a flat scan is enough for '2d'."""
    blank = render_sheet(Template.parse(SHEET), "11600111", "1", {})
    cv2.putText(blank, "OMR-TUS ANSWER SHEET", (90, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 3)
    filled = rendered()
    cv2.putText(filled, "OMR-TUS ANSWER SHEET", (90, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 3)
    data = with_steps(
        {
            "name": "FeatureBasedAlignment",
            "options": {"reference": "ref.png", "maxFeatures": 1000, "2d": affine},
        }
    )
    config = {"dimensions": {"processing_width": PAGE[0], "processing_height": PAGE[1]}}
    template = Template.parse(data, config, {"ref.png": encoded(blank)})
    if affine:
        matrix = cv2.getRotationMatrix2D((300, 400), 3, 0.97)
        matrix[:, 2] += (12, -9)
        scan = cv2.warpAffine(filled, matrix, PAGE, borderValue=255)
    else:
        src = np.float32([[0, 0], [600, 0], [600, 800], [0, 800]])
        dst = np.float32([[14, 9], [590, 20], [596, 790], [4, 784]])
        scan = cv2.warpPerspective(filled, cv2.getPerspectiveTransform(src, dst), PAGE, borderValue=255)
    assert_reads(scan, template)


def test_feature_based_alignment_fails_on_another_sheet():
    reference = np.full((800, 600), 255, np.uint8)
    cv2.putText(reference, "REFERENCE", (60, 400), cv2.FONT_HERSHEY_SIMPLEX, 2.5, 0, 6)
    template = Template.parse(
        with_steps({"name": "FeatureBasedAlignment", "options": {"reference": "r.png"}}),
        None,
        {"r.png": encoded(reference)},
    )
    r = read_sheet(np.random.default_rng(0).integers(0, 255, (800, 600), dtype=np.uint8), template)
    assert r.status == "failed" and "FeatureBasedAlignment" in r.error


def test_levels_is_a_tone_curve():
    lut = Levels(0.2, 0.8, 1.0).lut
    assert lut[:52].max() == 0 and lut[204:].min() == 255
    assert (np.diff(lut.astype(int)) >= 0).all() and 100 < lut[128] < 155
    assert Levels(0, 1, 2.0).lut[64] > 64  # gamma > 1 lightens the mid-tones


def test_levels_and_median_blur_keep_a_sheet_readable():
    template = Template.parse(
        with_steps(
            {"name": "Levels", "options": {"low": 0.1, "high": 0.9, "gamma": 1.2}},
            {"name": "MedianBlur", "options": {"kSize": 3}},
            {"name": "CropPage", "options": {}},
        )
    )
    assert_reads(photo(rendered(), 7), template)


MARKER = {"m.png": encoded(marker_image())}
BAD = [
    (with_steps({"name": "Rotate"}), None, {}, "preProcessors[0].name"),
    ({**SHEET, "preProcessors": {"name": "CropPage"}}, None, {}, "preProcessors"),
    (with_steps({"name": "CropPage", "options": []}), None, {}, "preProcessors[0].options"),
    (
        with_steps({"name": "GaussianBlur", "options": {"kSize": [4, 4]}}),
        None,
        {},
        "preProcessors[0].options.kSize",
    ),
    (with_steps({"name": "MedianBlur", "options": {"kSize": 4}}), None, {}, "preProcessors[0].options.kSize"),
    (
        with_steps({"name": "Levels", "options": {"low": 0.8, "high": 0.2}}),
        None,
        {},
        "preProcessors[0].options.high",
    ),
    (
        with_steps({"name": "Levels", "options": {"gamma": "bright"}}),
        None,
        {},
        "preProcessors[0].options.gamma",
    ),
    (
        with_steps({"name": "CropPage", "options": {"morphKernel": [0, 10]}}),
        None,
        {},
        "preProcessors[0].options.morphKernel",
    ),
    (
        with_steps({"name": "CropPage"}, {"name": "CropOnMarkers", "options": {"relativePath": "m.png"}}),
        None,
        {},
        "preProcessors[1].options.relativePath",
    ),
    (
        with_steps({"name": "CropOnMarkers", "options": {"relativePath": "m.png"}}),
        None,
        {"m.png": b"not an image"},
        "preProcessors[0].options.relativePath",
    ),
    (
        with_steps(
            {"name": "CropOnMarkers", "options": {"relativePath": "m.png", "marker_rescale_range": [90, 40]}}
        ),
        None,
        MARKER,
        "preProcessors[0].options.marker_rescale_range",
    ),
    (
        with_steps(
            {"name": "CropOnMarkers", "options": {"relativePath": "m.png", "marker_rescale_range": 50}}
        ),
        None,
        MARKER,
        "preProcessors[0].options.marker_rescale_range",
    ),
    (
        with_steps(
            {"name": "CropOnMarkers", "options": {"relativePath": "m.png", "minMatchingThreshold": "high"}}
        ),
        None,
        MARKER,
        "preProcessors[0].options.minMatchingThreshold",
    ),
    (
        with_steps({"name": "FeatureBasedAlignment", "options": {}}),
        None,
        {},
        "preProcessors[0].options.reference",
    ),
    (
        with_steps({"name": "FeatureBasedAlignment", "options": {"reference": "blank.png"}}),
        None,
        {"blank.png": encoded(np.full((100, 100), 255, np.uint8))},
        "preProcessors[0].options.reference",
    ),
    (
        with_steps({"name": "CropPage"}),
        {"dimensions": {"processing_width": 10}},
        {},
        "config.dimensions.processing_width",
    ),
    (with_steps({"name": "CropPage"}), ["not", "an", "object"], {}, "config"),
]


@pytest.mark.parametrize("data,config,assets,key", BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_preprocessors_name_the_key(data, config, assets, key):
    with pytest.raises(TemplateError) as err:
        Template.parse(data, config, assets)
    assert err.value.key == key, str(err.value)


def test_a_huge_asset_image_is_refused_from_its_header():
    """A small PNG that would decode to 20000 x 20000 pixels is refused before decoding."""
    import io
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 20000
    rows = zlib.compress(b"\0" * (side + 1) * 64)  # a few rows are enough for the header check
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )
    assert io.BytesIO(png).getbuffer().nbytes < 100_000
    with pytest.raises(TemplateError, match="must be 8 to 10000 pixels a side"):
        Template.parse(
            with_steps({"name": "CropOnMarkers", "options": {"relativePath": "m.png"}}), None, {"m.png": png}
        )
