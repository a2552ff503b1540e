"""Printable answer sheets drawn from a template, so a sheet and its reader share one geometry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import segno
from PIL import Image

from .template import Bubble, Template

PAPER = 255
OUTLINE = 70  # printed bubble outline
LETTER = 200  # light print, well under what reads as a mark
FILL = 25  # a clean, fully filled bubble
QR_QUIET = 4  # modules of white around the QR code (the standard quiet zone)
DPI = 200
FONT = cv2.FONT_HERSHEY_SIMPLEX
SHIFT = 4  # sub-pixel drawing: coordinates are multiplied by 2**SHIFT


@dataclass(frozen=True)
class Print:
    """How a form is printed. Our own sheets print values light, so that they never read as a
    mark; forms from elsewhere often print a letter or digit inside each bubble as dark as its
    outline, and some carry a title and a frame (what FeatureBasedAlignment matches on)."""

    value: int = LETTER  # grey level of the value printed inside each bubble
    value_size: float = 1 / 60  # text scale per pixel of bubble height
    value_weight: int = 1
    heading: str | None = None  # printed across the top, inside a frame round the page
    grid: bool = False  # a ruled table round the bubbles, a line between rows
    qr: bool = True  # False: a master copied for everyone, its qr box left blank


OWN = Print()
DARK_VALUES = Print(value=60, value_size=1 / 34)


def render_sheet(
    template: Template,
    task_id: str,
    student_id: str,
    answers: dict[str, str | Iterable[str]] | None = None,
    style: Print = OWN,
) -> np.ndarray:
    """The canonical page as uint8 grayscale; `answers` fills bubbles (a str marks one value per
    character, a list marks exact values; a custom label such as student_id spreads over its parts)."""
    w, h = template.page
    page = np.full((h, w), PAPER, np.uint8)
    if template.markers:
        _draw_markers(page, template)
    if template.qr and style.qr:
        _draw_qr(page, template, f"OMR:{task_id}:{student_id}")
    if style.heading:
        _draw_heading(page, template, style.heading)
    if style.grid:
        _draw_grid(page, template)
    _draw_ids(page, template, task_id, student_id)
    chosen = _chosen(template, answers or {})
    for f in template.fields:
        if f.bubbles[0].x != f.bubbles[-1].x:  # horizontal field: label to its left
            _draw_label(page, f.label, f.bubbles[0])
        for b in f.bubbles:
            _draw_bubble(page, b, b.value in chosen.get(f.label, ()), style)
    return page


def printed_at(template: Template, width: int, height: int, border: int = 0) -> Template:
    """The template's bubbles on the paper of a `width` x `height` picture whose page the
    template describes, the paper `border` px in from each side of the picture (OMRChecker
    without preprocessors scales the whole image to pageDimensions, so a template may describe
    any size, and a photo with the desk round the paper)."""
    if template.markers or template.qr:
        raise ValueError("only OMRChecker templates (no markers or qr) describe a print size")
    sx, sy = width / template.page[0], height / template.page[1]

    def scaled(b: Bubble) -> Bubble:
        return Bubble(
            b.value, round(b.x * sx) - border, round(b.y * sy) - border, round(b.w * sx), round(b.h * sy)
        )

    fields = tuple(dataclasses.replace(f, bubbles=tuple(map(scaled, f.bubbles))) for f in template.fields)
    return dataclasses.replace(template, page=(width - 2 * border, height - 2 * border), fields=fields)


def in_colour(page: np.ndarray, ink: tuple[int, int, int], paper: tuple[int, int, int]) -> np.ndarray:
    """A grey page printed in colour: `ink` (BGR) where it is black, `paper` where it is white,
    grey print in between (a form printed in red drop-out ink, cream paper)."""
    dark = (1 - page.astype(np.float32) / PAPER)[:, :, None]
    return np.clip(
        np.array(paper, np.float32) * (1 - dark) + np.array(ink, np.float32) * dark, 0, 255
    ).astype(np.uint8)


def ring_marker(diameter: int) -> np.ndarray:
    """A concentric-circle corner marker (a ring round a dot), as OMRChecker's samples print."""
    image = np.full((diameter, diameter), PAPER, np.uint8)
    c, r = fixed((diameter - 1) / 2)[0], diameter / 2 - 1
    for share, tone in ((1.0, 0), (0.72, PAPER), (0.42, 0)):
        cv2.circle(image, (c, c), fixed(r * share)[0], tone, -1, cv2.LINE_AA, SHIFT)
    return image


def framed_by_markers(page: np.ndarray, diameter: int, margin: int) -> np.ndarray:
    """The page on a sheet `margin` px larger each side, a ring marker centred on each of the
    page's corners: CropOnMarkers crops to the markers' centres, so the page is what it finds."""
    sheet = np.pad(
        page, ((margin, margin), (margin, margin)) + ((0, 0),) * (page.ndim - 2), constant_values=PAPER
    )
    marker = ring_marker(diameter)
    if page.ndim == 3:
        marker = cv2.cvtColor(marker, cv2.COLOR_GRAY2BGR)
    h, w = page.shape[:2]
    for x, y in ((0, 0), (w, 0), (0, h), (w, h)):
        top, left = margin + y - diameter // 2, margin + x - diameter // 2
        region = sheet[top : top + diameter, left : left + diameter]
        region[:] = np.minimum(region, marker)
    return sheet


def _chosen(template: Template, answers: dict[str, str | Iterable[str]]) -> dict[str, set[str]]:
    """{field label: set of values}; a custom label's string gives one character to each part."""
    fields = template.field_map()
    out: dict[str, set[str]] = {}
    for label, value in answers.items():
        parts = template.custom_labels.get(label)
        if parts is not None:
            chars = list(value)
            if len(chars) != len(parts):
                raise ValueError(f"{label}: needs {len(parts)} characters, got {value!r}")
            out.update({p: {v} for p, v in zip(parts, chars)})
        elif label in fields:
            out[label] = set(value)
        else:
            raise ValueError(f"unknown field {label!r}")
    return out


def _center(b: Bubble) -> tuple[float, float]:
    return b.x + b.w / 2 - 0.5, b.y + b.h / 2 - 0.5


def fixed(*v: float) -> tuple[int, ...]:
    return tuple(round(n * (1 << SHIFT)) for n in v)


def _draw_bubble(page: np.ndarray, b: Bubble, filled: bool, style: Print = OWN) -> None:
    center = fixed(*_center(b))
    cv2.ellipse(page, center, fixed(b.w / 2 - 1.5, b.h / 2 - 1.5), 0, 0, 360, OUTLINE, 2, cv2.LINE_AA, SHIFT)
    if filled:
        cv2.ellipse(page, center, fixed(b.w / 2 - 3, b.h / 2 - 3), 0, 0, 360, FILL, -1, cv2.LINE_AA, SHIFT)
    else:
        _draw_letter(page, b, style)


def _put_text(
    page: np.ndarray,
    text: str,
    scale: float,
    color: int,
    x: float,
    cy: float,
    centred: bool,
    weight: int = 1,
    left: bool = False,
) -> None:
    """Text vertically centred on `cy`: centred on `x`, starting at `x` (`left`), or else
    ending at `x`."""
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, weight)
    start = x if left else x - tw / 2 if centred else x - tw
    cv2.putText(page, text, (round(start), round(cy + th / 2)), FONT, scale, color, weight, cv2.LINE_AA)


def _draw_letter(page: np.ndarray, b: Bubble, style: Print) -> None:
    """The bubble's value inside it, in the style's tone and size."""
    cx, cy = _center(b)
    _put_text(
        page, b.value, b.h * style.value_size, style.value, cx, cy, centred=True, weight=style.value_weight
    )


def _draw_grid(page: np.ndarray, template: Template) -> None:
    """A ruled table round all bubbles and their labels, a line between rows: the frame a
    page-outline search may take for the page."""
    bubbles = [b for f in template.fields for b in f.bubbles]
    w, h = bubbles[0].w, bubbles[0].h
    x0, x1 = min(b.x for b in bubbles) - 2 * w, max(b.x + b.w for b in bubbles) + w // 2
    rows = sorted({b.y for b in bubbles})
    pad = (rows[1] - rows[0] - h) // 2 if len(rows) > 1 else h // 2
    y0, y1 = rows[0] - pad, rows[-1] + h + pad
    weight = max(2, round(h / 10))
    cv2.rectangle(page, (x0, y0), (x1, y1), 0, weight)
    for top, below in zip(rows, rows[1:]):
        y = (top + h + below) // 2
        cv2.line(page, (x0, y), (x1, y), 0, max(1, weight // 2))


def _draw_heading(page: np.ndarray, template: Template, title: str) -> None:
    """A frame, a crest, a title and form furniture (labelled boxes, instructions) above and
    below the bubbles: bold fixed print with distinct corners, the same on every sheet, large
    enough to stay distinct at OMRChecker's processing size."""
    h, w = page.shape
    unit = w / 1654
    weight, bold = max(1, round(3 * unit)), max(2, round(5 * unit))
    margin = round(20 * unit)
    cv2.rectangle(page, (margin, margin), (w - margin, h - margin), 0, bold)
    crest = (round(w * 0.22), round(120 * unit))
    cv2.circle(page, crest, round(70 * unit), 0, -1, cv2.LINE_AA)
    star = (
        np.array(
            [
                (np.cos(a) * r, np.sin(a) * r)
                for i, a in enumerate(np.linspace(-np.pi / 2, 3.5 * np.pi, 10, endpoint=False))
                for r in [(55 if i % 2 == 0 else 22) * unit]
            ]
        )
        + crest
    )
    cv2.fillPoly(page, [star.round().astype(np.int32)], PAPER, cv2.LINE_AA)
    _put_text(page, title, 2.0 * unit, 0, w * 0.58, 90 * unit, centred=True, weight=bold)
    _put_text(
        page,
        "Board of Examinations - Answer Sheet",
        1.1 * unit,
        0,
        w * 0.58,
        150 * unit,
        centred=True,
        weight=weight,
    )
    top = min(b.y for f in template.fields for b in f.bubbles)
    bottom = max(b.y + b.h for f in template.fields for b in f.bubbles)
    rows = [
        (y, text)
        for y, text in ((230, "Candidate name"), (310, "Centre"), (390, "Signature"))
        if (y + 40) * unit < top
    ]
    for y, text in rows:
        _put_text(page, text, 1.2 * unit, 0, w * 0.33, y * unit, centred=False, weight=weight)
        cv2.rectangle(
            page,
            (round(w * 0.36), round((y - 32) * unit)),
            (round(w * 0.92), round((y + 32) * unit)),
            0,
            weight,
        )
    notes = (
        "INSTRUCTIONS",
        "1. Use a dark pen. Fill the bubble completely.",
        "2. Do not fold or staple.",
        "3. Erase cleanly any mark you change.",
    )
    for i, text in enumerate(notes):
        y = bottom + (70 + 55 * i) * unit
        if y < h - 50 * unit:
            _put_text(page, text, 1.1 * unit, 0, w * 0.08, y, centred=False, weight=weight, left=True)


def _draw_label(page: np.ndarray, label: str, b: Bubble) -> None:
    """A field's label, ending a little left of its first bubble."""
    _put_text(page, label, b.h / 40, 0, b.x - b.w * 0.4, _center(b)[1], centred=False)


def _draw_markers(page: np.ndarray, template: Template) -> None:
    m = template.markers
    assert m is not None, "called for a template with markers"
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, m.dictionary))
    for marker_id, (x, y) in m.positions.items():
        page[y : y + m.size, x : x + m.size] = cv2.aruco.generateImageMarker(dictionary, marker_id, m.size)


def _qr_modules(payload: str) -> np.ndarray:
    """The QR code's modules (True = dark) with its quiet zone."""
    matrix = np.array(segno.make_qr(payload, error="m").matrix, dtype=bool)
    return np.pad(matrix, QR_QUIET)


def _draw_qr(page: np.ndarray, template: Template, payload: str) -> None:
    """Whole-pixel modules centred in the qr box: crisp edges decode best after scanning."""
    q = template.qr
    assert q is not None, "called for a template with a qr box"
    modules = _qr_modules(payload)
    px = q.size // modules.shape[0]
    if px < 2:
        raise ValueError(f"qr.size {q.size} is too small for payload {payload!r}")
    image = np.where(np.kron(modules, np.ones((px, px), bool)), 0, PAPER).astype(np.uint8)
    off = (q.size - image.shape[0]) // 2
    page[q.y + off : q.y + off + image.shape[0], q.x + off : q.x + off + image.shape[1]] = image


def _draw_ids(page: np.ndarray, template: Template, task_id: str, student_id: str) -> None:
    """Human-readable ids under the QR code (or at the top left without one)."""
    unit = template.page[0] / 1654  # 1 on an A4 page at 200 dpi
    scale, line = 0.8 * unit, round(40 * unit)
    x, y = (template.qr.x, template.qr.y + template.qr.size + line) if template.qr else (line // 2, line)
    for i, text in enumerate((f"Task {task_id}", f"Student {student_id}")):
        cv2.putText(page, text, (x, y + i * line), FONT, scale, 0, 2 if scale > 0.5 else 1, cv2.LINE_AA)


def write_pages(pages: list[np.ndarray], path: str | Path) -> None:
    """`.pdf`/`.tif` hold every page; `.png` is `path` for one page, else `<stem>-<n>.png`."""
    path = Path(path)
    if not pages:
        raise ValueError("no pages to write")
    images = [Image.fromarray(p) for p in pages]
    suffix = path.suffix.lower()
    if suffix in (".pdf", ".tif", ".tiff"):
        images[0].save(path, save_all=True, append_images=images[1:], resolution=float(DPI), dpi=(DPI, DPI))
    elif suffix == ".png":
        names = (
            [path]
            if len(images) == 1
            else [path.with_name(f"{path.stem}-{n}.png") for n in range(1, len(images) + 1)]
        )
        for image, name in zip(images, names):
            image.save(name, dpi=(DPI, DPI))
    else:
        raise ValueError(f"{path.name}: write .pdf, .tif or .png")
