"""Printable answer sheets drawn from a template, so a sheet and its reader share one geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import segno
from PIL import Image

from .template import Bubble, Template

PAPER = 255
OUTLINE = 70       # printed bubble outline
LETTER = 200       # light print, well under what reads as a mark
FILL = 25          # a clean, fully filled bubble
QR_QUIET = 4       # modules of white around the QR code (the standard quiet zone)
DPI = 200
FONT = cv2.FONT_HERSHEY_SIMPLEX
SHIFT = 4          # sub-pixel drawing: coordinates are multiplied by 2**SHIFT


def render_sheet(template: Template, task_id: str, student_id: str,
                 answers: dict[str, str | Iterable[str]] | None = None) -> np.ndarray:
    """The canonical page as uint8 grayscale; `answers` fills bubbles (a str marks one value per
    character, a list marks exact values; a custom label such as student_id spreads over its parts)."""
    w, h = template.page
    page = np.full((h, w), PAPER, np.uint8)
    if template.markers:
        _draw_markers(page, template)
    if template.qr:
        _draw_qr(page, template, f"OMR:{task_id}:{student_id}")
    _draw_ids(page, template, task_id, student_id)
    chosen = _chosen(template, answers or {})
    for f in template.fields:
        if f.bubbles[0].x != f.bubbles[-1].x:  # horizontal field: label to its left
            _draw_label(page, f.label, f.bubbles[0])
        for b in f.bubbles:
            _draw_bubble(page, b, b.value in chosen.get(f.label, ()))
    return page


def _chosen(template: Template, answers: dict[str, str | Iterable[str]]) -> dict[str, set[str]]:
    """{field label: set of values}; a custom label's string gives one character to each part."""
    fields = template.field_map()
    out: dict[str, set[str]] = {}
    for label, value in answers.items():
        parts = template.custom_labels.get(label)
        if parts is not None:
            if len(value) != len(parts):
                raise ValueError(f"{label}: needs {len(parts)} characters, got {value!r}")
            out.update({p: {v} for p, v in zip(parts, value)})
        elif label in fields:
            out[label] = set(value)
        else:
            raise ValueError(f"unknown field {label!r}")
    return out


def _center(b: Bubble) -> tuple[float, float]:
    return b.x + b.w / 2 - 0.5, b.y + b.h / 2 - 0.5


def _fixed(*v: float) -> tuple[int, ...]:
    return tuple(round(n * (1 << SHIFT)) for n in v)


def _draw_bubble(page: np.ndarray, b: Bubble, filled: bool) -> None:
    center = _fixed(*_center(b))
    cv2.ellipse(page, center, _fixed(b.w / 2 - 1.5, b.h / 2 - 1.5), 0, 0, 360, OUTLINE, 2,
                cv2.LINE_AA, SHIFT)
    if filled:
        cv2.ellipse(page, center, _fixed(b.w / 2 - 3, b.h / 2 - 3), 0, 0, 360, FILL, -1,
                    cv2.LINE_AA, SHIFT)
    else:
        _draw_letter(page, b)


def _put_text(page: np.ndarray, text: str, scale: float, color: int, x: float, cy: float,
              centred: bool) -> None:
    """Text vertically centred on `cy`: centred on `x`, or else ending at `x`."""
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 1)
    left = x - tw / 2 if centred else x - tw
    cv2.putText(page, text, (round(left), round(cy + th / 2)), FONT, scale, color, 1, cv2.LINE_AA)


def _draw_letter(page: np.ndarray, b: Bubble) -> None:
    """The bubble's value, printed light so that it never reads as a mark."""
    cx, cy = _center(b)
    _put_text(page, b.value, b.h / 60, LETTER, cx, cy, centred=True)


def _draw_label(page: np.ndarray, label: str, b: Bubble) -> None:
    """A field's label, ending a little left of its first bubble."""
    _put_text(page, label, b.h / 40, 0, b.x - b.w * 0.4, _center(b)[1], centred=False)


def _draw_markers(page: np.ndarray, template: Template) -> None:
    m = template.markers
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, m.dictionary))
    for marker_id, (x, y) in m.positions.items():
        page[y:y + m.size, x:x + m.size] = cv2.aruco.generateImageMarker(dictionary, marker_id, m.size)


def _qr_modules(payload: str) -> np.ndarray:
    """The QR code's modules (True = dark) with its quiet zone."""
    matrix = np.array(segno.make_qr(payload, error="m").matrix, dtype=bool)
    return np.pad(matrix, QR_QUIET)


def _draw_qr(page: np.ndarray, template: Template, payload: str) -> None:
    """Whole-pixel modules centred in the qr box: crisp edges decode best after scanning."""
    q = template.qr
    modules = _qr_modules(payload)
    px = q.size // modules.shape[0]
    if px < 2:
        raise ValueError(f"qr.size {q.size} is too small for payload {payload!r}")
    image = np.where(np.kron(modules, np.ones((px, px), bool)), 0, PAPER).astype(np.uint8)
    off = (q.size - image.shape[0]) // 2
    page[q.y + off:q.y + off + image.shape[0], q.x + off:q.x + off + image.shape[1]] = image


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
        images[0].save(path, save_all=True, append_images=images[1:], resolution=float(DPI),
                       dpi=(DPI, DPI))
    elif suffix == ".png":
        names = [path] if len(images) == 1 else [
            path.with_name(f"{path.stem}-{n}.png") for n in range(1, len(images) + 1)]
        for image, name in zip(images, names):
            image.save(name, dpi=(DPI, DPI))
    else:
        raise ValueError(f"{path.name}: write .pdf, .tif or .png")
