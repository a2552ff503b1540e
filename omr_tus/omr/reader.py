"""Reads one scanned sheet: align it onto the template's page, decode the QR code, judge bubbles.

A doubtful reading is never passed off as a clean one: it comes back `needs_review` with the
reason in `error`, and a page that cannot be read at all comes back `failed`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
import zxingcpp

from .crosscheck import mostly_blank_but_two_valued, read_twice
from .discs import annulus
from .doubts import light_fills, ringed
from .errors import SheetError
from .fit import Fit, fit_blocks
from .paper import nearby_paper
from .preprocess import page_outline
from .template import Bubble, Field, Markers, Template

INNER = 0.6  # inner disc radius, as a share of the bubble's half-size
INNER_OMRCHECKER = 0.9  # ... in an OMRChecker template, whose box is what OMRChecker reads
RING = (1.2, 1.5)  # paper ring just outside the printed outline, same units
BAND = (0.8, 1.05)  # where the printed outline is, same units
OUTLINE_SEEN = 0.1  # outlines this dark (typical band darkness) can check registration
OUTLINE_LOST = 0.5  # a band lighter than this share of the typical one: bubble off its print
NO_INK = 0.05  # darkness added over the print, in units of a mark, below which a disc is blank
MARKED = 0.5  # share of the disc that is dark, net of print: marked from here
BLANK = 0.15  # ... and blank below this; in between is ambiguous (tick, slash, erasure)
INK_DEFAULT = 0.75  # darkness of a pencil mark when a sheet has none to learn from
INK_MIN = 0.1  # a sheet's marks add at least this darkness to a bubble ...
INK_CLEAR = 3.0  # ... and this many times what most unmarked bubbles show
PIXEL_DARK = (0.12, 0.42)  # bounds of the per-sheet "dark pixel" threshold
PRINT_MAX = 0.85  # at most this much of an unmarked bubble may be print
PRINT_SPREAD = 0.25  # how much more print one kind of bubble may hold than the sheet's typical
KIND_QUARTILE = 8  # bubbles of a kind needed before its lower quartile is trusted
PAPER_NEAR = 0.9  # the ring is paper unless darker than this share of the nearby paper
MOVED = 0.25  # blocks moved this share of their bubble size (mean) ask for a second guess
REVIEW_ALIGN = 0.12  # mean marker misfit above this share of the bubble size needs review
MIN_SIDE = 64
DETECT_SIDE = 40  # marker side (px) at which ArUco detection runs
QR_MARGIN = 0.25  # share of the qr box searched around it
QR_PRINTED = 0.1  # share of the qr box that is dark once a code is printed there (a code is ~half)
QR_PAYLOAD = re.compile(r"^OMR:([0-9A-Za-z-]{1,32}):([0-9A-Za-z-]{1,32})(?::([1-9][0-9]{0,5}))?$")
FLAG_ORDER = ("blank", "multiple", "ambiguous")

# per bubble size: bubble indices, inner-disc pixels, paper level, darkness of the outline band
Group = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class SheetResult:
    status: str
    task_id: str | None
    student_id: str | None
    qr_payload: str | None
    page: int | None
    answers: dict[str, str]
    flags: dict[str, list[str]]
    confidence: dict[str, float]
    error: str | None
    alignment_error: float | None
    aligned: np.ndarray | None = field(default=None, repr=False)


def parse_qr(payload: str) -> tuple[str, str, int | None] | None:
    """`OMR:<task>:<student>[:page]` -> (task, student, page), or None for any other text."""
    m = QR_PAYLOAD.match(payload.strip()) if isinstance(payload, str) else None
    if not m:
        return None
    return m.group(1), m.group(2), int(m.group(3)) if m.group(3) else None


def read_sheet(image: np.ndarray, template: Template, qr_expected: bool = True) -> SheetResult:
    """Reads one page (BGR or gray, any orientation or scale); never raises for a bad image.
    `qr_expected` False (uploads whose sheets need not carry a code): an empty qr box is no
    review reason, while a code printed there that does not read still is."""
    try:
        return _read(_to_gray(image), template, qr_expected)
    except SheetError as e:
        return _failed(str(e))
    except (cv2.error, ValueError, RuntimeError, MemoryError) as e:
        return _failed(f"unreadable image: {e}")


def _failed(reason: str) -> SheetResult:
    return SheetResult("failed", None, None, None, None, {}, {}, {}, reason, None)


def _to_gray(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise SheetError("not an image: expected a 2-D gray or 3-D colour pixel array")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise SheetError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels not in (1, 3, 4):
            raise SheetError(f"unsupported image with {channels} channels")
        image = (
            image[:, :, 0]
            if channels == 1
            else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)
        )
    if min(image.shape) < MIN_SIDE:
        raise SheetError(f"image too small ({image.shape[1]}x{image.shape[0]})")
    return np.ascontiguousarray(image)


def _read(gray: np.ndarray, template: Template, qr_expected: bool) -> SheetResult:
    aligned, misfit, reasons, page = _best_fit(gray, template)
    payload = _read_qr(aligned, template) if template.qr else None
    qr = parse_qr(payload) if payload else None
    if template.qr and not qr:
        if payload is not None:
            reasons.append(f"QR payload {payload!r} is not OMR:<task>:<student>")
        elif qr_expected or qr_printed(aligned, template):
            reasons.append("QR code unreadable")
    if len(page.fit.unfit) == len(template.layout.names):
        raise SheetError("the template lands on no printed bubbles: " + _unfit_reasons(page.fit))
    answers, flags, confidence = page.answers, page.flags, page.confidence
    reasons.extend(page.reasons)
    doubtful = [c for c, f in flags.items() if "ambiguous" in f]
    if doubtful:
        reasons.append("ambiguous: " + ", ".join(doubtful))
    student_id = _student_id(qr, answers, flags, reasons)
    return SheetResult(
        status="needs_review" if reasons else "ok",
        task_id=qr[0] if qr else None,
        student_id=student_id,
        qr_payload=payload,
        page=qr[2] if qr else None,
        answers=answers,
        flags=flags,
        confidence=confidence,
        error="; ".join(reasons) or None,
        alignment_error=misfit,
        aligned=aligned,
    )


def _student_id(
    qr: tuple[str, str, int | None] | None,
    answers: dict[str, str],
    flags: dict[str, list[str]],
    reasons: list[str],
) -> str | None:
    """The QR's student wins; a bubbled `student_id` that disagrees sends the sheet to review."""
    bubbled = answers.get("student_id") if not flags.get("student_id") else None
    if qr and bubbled and bubbled != qr[1]:
        reasons.append(f"bubbled student_id {bubbled} differs from the QR's {qr[1]}")
    return qr[1] if qr else bubbled


# --- alignment -------------------------------------------------------------------------------


def _best_fit(
    gray: np.ndarray, template: Template
) -> tuple[np.ndarray, float | None, list[str], PageReading]:
    """The aligned page, marker misfit, review reasons and reading of the alignment the template
    fits best: the preprocessors' first guess, or a second guess where blocks do not fit the
    first or fit it only far from where the template puts them."""
    if template.alignment is None:
        aligned, misfit, reasons = _align(gray, template)
        return aligned, misfit, reasons, read_page(aligned, template)
    best, best_score = None, None
    for aligned, reasons in template.alignment.candidates(gray, template.page):
        page = read_page(aligned, template)
        score = (len(page.fit.unfit), page.fit.moved(template))
        if best_score is None or score < best_score:
            best, best_score = (aligned, None, reasons, page), score
        if score[0] == 0 and score[1] <= MOVED:
            break
    assert best is not None, "an alignment yields at least one candidate"
    return best


def _align(gray: np.ndarray, template: Template) -> tuple[np.ndarray, float | None, list[str]]:
    """The page warped onto the canonical page by our markers or the page outline, the marker
    misfit (px) and review reasons."""
    work = _shrink(gray, int(max(gray.shape) / max(template.page)))
    if template.markers is None:
        return _align_by_page(work, template)
    matrix, misfit = _marker_transform(work, template)
    aligned = cv2.warpPerspective(work, matrix, template.page, flags=cv2.INTER_LINEAR, borderValue=255)
    limit = REVIEW_ALIGN * min(min(b.w, b.h) for f in template.fields for b in f.bubbles)
    reasons = [f"alignment error {misfit:.1f} px"] if misfit > limit else []
    return aligned, misfit, reasons


@lru_cache(maxsize=32)
def _detector(dictionary: str) -> cv2.aruco.ArucoDetector:
    return cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)), cv2.aruco.DetectorParameters()
    )


def _detect(work: np.ndarray, template: Template) -> dict[int, np.ndarray]:
    """{template marker id: its 4 corners in `work`}. Searched on a copy shrunk so markers are
    about DETECT_SIDE px or more (4x faster at 200 dpi; full size if that misses), refined on `work`."""
    m = template.markers
    assert m is not None, "called for a template with markers"
    side = m.size * max(work.shape) / max(template.page)
    factor = max(1, int(side / DETECT_SIDE))
    found = _find_markers(work, m, factor)
    if len(found) < 3 and factor > 1:
        found = _find_markers(work, m, 1)
    if not found:
        return found
    points = np.concatenate(list(found.values())).astype(np.float32).reshape(-1, 1, 2)
    half = max(2, round(side / 16))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    refined = cv2.cornerSubPix(work, points, (half, half), (-1, -1), criteria).reshape(-1, 4, 2)
    return dict(zip(found, refined.astype(np.float64)))


def _find_markers(work: np.ndarray, m: Markers, factor: int) -> dict[int, np.ndarray]:
    """Markers of the template found once each on `work` shrunk by `factor`, in `work` pixels."""
    corners, ids, _ = _detector(m.dictionary).detectMarkers(_shrink(work, factor))
    found = [] if ids is None else [int(i) for i in ids.ravel()]
    return {
        i: (c.reshape(4, 2) + 0.5) * factor - 0.5
        for c, i in zip(corners, found)
        if i in m.positions and found.count(i) == 1
    }


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by a whole factor: OpenCV's fast path for area averaging (10x a fractional one)."""
    if factor < 2:
        return image
    return cv2.resize(image, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)


def _marker_corners(x: int, y: int, size: int) -> np.ndarray:
    """Canonical corners in ArUco order (clockwise from top-left), pixel-centre convention."""
    x0, y0, x1, y1 = x - 0.5, y - 0.5, x + size - 0.5, y + size - 0.5
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _marker_transform(work: np.ndarray, template: Template) -> tuple[np.ndarray, float]:
    """Homography (4 markers) or affine map (3) from the scan to the page; ids fix the turn."""
    m = template.markers
    assert m is not None, "called for a template with markers"
    found = _detect(work, template)
    if len(found) < 3:
        raise SheetError(f"found {len(found)} of the template's {len(m.positions)} markers (need 3)")
    src = np.concatenate(list(found.values()))
    dst = np.concatenate([_marker_corners(*m.positions[i], m.size) for i in found])
    if len(found) == 4:
        matrix, _ = cv2.findHomography(src, dst, 0)
    else:
        affine, *_ = np.linalg.lstsq(np.hstack([src, np.ones((len(src), 1))]), dst, rcond=None)
        matrix = np.vstack([affine.T, [0, 0, 1]])
    if matrix is None or not np.isfinite(matrix).all():
        raise SheetError("markers give no usable alignment")
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2), matrix).reshape(-1, 2)
    return matrix, float(np.linalg.norm(mapped - dst, axis=1).mean())


def _align_by_page(work: np.ndarray, template: Template) -> tuple[np.ndarray, None, list[str]]:
    """No markers: warp the largest four-cornered outline; without one, read the whole image."""
    w, h = template.page
    corners = page_outline(work)
    if corners is None:
        page = cv2.resize(work, (w, h), interpolation=cv2.INTER_AREA)
        return page, None, ["page outline not found: the whole image was read as the page"]
    target = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(work, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=255), None, []


# --- QR code ---------------------------------------------------------------------------------


def _decode(image: np.ndarray) -> str | None:
    """The first OMR payload found, else the first QR text, else None."""
    # zxing-cpp converts a BarcodeFormat to BarcodeFormats; its stub accepts only the latter
    qr = zxingcpp.BarcodeFormat.QRCode
    texts = [b.text for b in zxingcpp.read_barcodes(image, formats=qr)]  # type: ignore[arg-type]
    return next((t for t in texts if parse_qr(t)), texts[0] if texts else None)


def _read_qr(aligned: np.ndarray, template: Template) -> str | None:
    """The qr box (with a margin) first: small and fast; the whole page only as a fallback."""
    q = template.qr
    assert q is not None, "called for a template with a qr box"
    m = round(q.size * QR_MARGIN)
    region = aligned[max(0, q.y - m) : q.y + q.size + m, max(0, q.x - m) : q.x + q.size + m]
    return _decode(np.ascontiguousarray(region)) or _decode(aligned)


def qr_printed(aligned: np.ndarray, template: Template) -> bool:
    """Whether something is printed in the qr box (a code that may be damaged), rather than
    the box being left blank: dark against the paper around the box."""
    q = template.qr
    assert q is not None, "called for a template with a qr box"
    box = aligned[q.y : q.y + q.size, q.x : q.x + q.size]
    paper = max(float(np.percentile(box, 95)), 1.0)
    return float((box < 0.5 * paper).mean()) >= QR_PRINTED


def find_qr_payload(image: np.ndarray) -> str | None:
    """A QR payload anywhere in an unaligned image: picks the template before reading the sheet."""
    try:
        return _decode(_to_gray(image))
    except SheetError:
        return None


# --- bubbles ---------------------------------------------------------------------------------


def measure_bubbles(
    page: np.ndarray, template: Template, shifts: np.ndarray, near: np.ndarray
) -> list[Group]:
    """Samples per bubble size; the paper is the ring just outside each bubble, so that uneven
    light cancels, and the outline band's darkness tells whether the bubble sits on its print.
    Where the print or a mark is larger than the template's box the ring is not paper: the
    paper nearby (`near`, the lightest level around each bubble) stands in for it then."""
    boxes = template.layout.boxes + np.hstack([shifts, np.zeros_like(shifts)])
    inner = INNER if template.markers else INNER_OMRCHECKER
    groups = []
    for size in {tuple(s) for s in boxes[:, 2:]}:
        idx = np.flatnonzero((boxes[:, 2:] == size).all(1))
        ring = np.median(annulus(page, boxes[idx], *RING), axis=1)
        paper = np.maximum(np.maximum(ring, PAPER_NEAR * near[idx]), 1)
        outline = 1 - annulus(page, boxes[idx], *BAND).mean(1) / paper
        groups.append((idx, annulus(page, boxes[idx], 0, inner), paper, outline))
    return groups


def _gather(groups: Sequence[tuple[np.ndarray, ...]], column: int) -> np.ndarray:
    """One per-bubble quantity from every group, in template order."""
    out = np.empty(sum(len(g[0]) for g in groups))
    for g in groups:
        out[g[0]] = g[column]
    return out


def _print_base(values: np.ndarray, kinds: np.ndarray, mark: float) -> np.ndarray:
    """What each bubble shows unmarked: bubbles printed alike (same value, same size: the same
    letter inside) are compared with each other, and most of a kind are unmarked, so its lower
    quartile is print (its least, for a kind too small for quartiles). A kind that is dark
    throughout (a lone bubble, or one answered on every row) may not claim more than the
    sheet's typical print plus PRINT_SPREAD, nor more than halfway from it to a `mark`, so its
    marks still count where print is heavy and marks are light (pencil over dark digits)."""
    typical = float(np.percentile(values, 25))
    cap = min(typical + PRINT_SPREAD, PRINT_MAX, (typical + mark) / 2)
    order = np.lexsort((values, kinds))
    _, starts, inverse, counts = np.unique(
        kinds[order], return_index=True, return_inverse=True, return_counts=True
    )
    lower = values[order][starts + np.where(counts >= KIND_QUARTILE, (counts - 1) // 4, 0)]
    base = np.empty_like(values)
    base[order] = np.minimum(lower, cap)[inverse]
    return base


def bubble_fill(groups: list[Group], kinds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much of each disc is marked, net of the print inside bubbles of its kind: the share
    of its pixels half as dark as this sheet's own marks (so an erased ghost does not count and
    a tick covers only part of the disc), raised to its mean darkness in units of a typical
    mark once it is clearly not blank (so a mark that fills only part of a box drawn off its
    print, or a soft photo, still reads). A disc that adds next to no darkness over its print
    holds no mark, however many of its pixels cross the dark threshold: dark letters printed
    inside bubbles vary a little from bubble to bubble, and that is all such a disc shows.
    Also returns the darkness each disc adds over its print, in units of the sheet's marks."""
    darkness = 1 - _gather([(idx, inner.mean(1) / paper) for idx, inner, paper, _ in groups], 1)
    ink, strength = _mark_darkness(darkness, kinds)
    threshold = float(np.clip(ink / 2, *PIXEL_DARK))
    share = _gather(
        [(idx, (inner <= (paper * (1 - threshold))[:, None]).mean(1)) for idx, inner, paper, _ in groups], 1
    )
    base = _print_base(share, kinds, 1.0)
    share = np.clip((share - base) / (1 - base), 0, 1)
    added = np.clip(strength / ink, 0, 1)
    fill = np.where(share >= BLANK, np.maximum(share, added), share)
    return np.where(added < NO_INK, np.minimum(share, added), fill), added


def _mark_darkness(darkness: np.ndarray, kinds: np.ndarray) -> tuple[float, np.ndarray]:
    """How dark a mark is on this sheet, and the darkness each bubble adds over its print:
    split the bubbles in two by the latter (Otsu), and take the median darkness of the darker
    group if it stands clear of the lighter one; else (a blank sheet) INK_DEFAULT. The print is
    judged once more against the sheet's own marks when it has them."""
    strength = darkness - _print_base(darkness, kinds, 1.0)
    if len(strength) < 2:
        return INK_DEFAULT, strength
    order = np.argsort(strength)
    s = strength[order]
    k = np.arange(1, len(s))
    total = np.cumsum(s)
    low, high = total[:-1] / k, (total[-1] - total[:-1]) / (len(s) - k)
    split = int(np.argmax(k * (len(s) - k) * (high - low) ** 2)) + 1
    ink = float(np.median(s[split:]))
    if ink < INK_MIN or ink < INK_CLEAR * float(np.percentile(s[:split], 90)):
        return INK_DEFAULT, strength
    mark = float(np.median(darkness[order[split:]]))
    return mark, darkness - _print_base(darkness, kinds, mark)


def off_print(groups: list[Group]) -> np.ndarray:
    """Bubbles whose printed outline is not where the aligned template puts it (a misplaced
    marker, a curled corner): their outline band is much lighter than the sheet's typical one.
    Only judged where outlines show in the band at all (OMRChecker boxes may not match print)."""
    outline = _gather(groups, 3)
    typical = float(np.median(outline))
    return outline < typical * OUTLINE_LOST if typical >= OUTLINE_SEEN else np.zeros(len(outline), bool)


def _confidence(fill: np.ndarray) -> np.ndarray:
    """0.5 on a decision boundary, 1 well clear of it, 0 in the middle of the ambiguous band."""
    margin = np.where(
        fill >= MARKED,
        fill - MARKED,
        np.where(fill < BLANK, BLANK - fill, -np.minimum(fill - BLANK, MARKED - fill)),
    )
    return np.clip(0.5 + margin / 0.3, 0, 1)


@dataclass(frozen=True)
class PageReading:
    answers: dict[str, str]
    flags: dict[str, list[str]]
    confidence: dict[str, float]
    reasons: list[str]
    fit: Fit
    bubbles: list[tuple[Bubble, str, str]]  # each bubble where it was read, its field, its state


def read_page(page: np.ndarray, template: Template) -> PageReading:
    """Answers, flags and confidence per output column from an aligned page, read twice: each
    block moved onto its print first (a block that does not fit makes its fields doubtful), then
    every field read by this reader and by OMRChecker's thresholds; where they disagree the field
    is doubtful too."""
    lay = template.layout
    near = nearby_paper(page, lay.boxes)
    fit = fit_blocks(page, template, near)
    groups = measure_bubbles(page, template, fit.shifts, near)
    kinds = _kinds(template)
    fill, added = bubble_fill(groups, kinds)
    fill, off = _field_relative(fill, lay.field), off_print(groups)
    boxes = lay.boxes + np.hstack([fit.shifts, np.zeros_like(fit.shifts)])
    ring = ringed(page, template, boxes, _gather(groups, 2), kinds, lay.field) & (fill < MARKED)
    light = light_fills(added, fill, lay.field, BLANK, MARKED)
    second = read_twice(page, template, fit.shifts, near)
    fields, bubbles, differ, start = {}, [], [], 0
    for f in template.fields:
        span = slice(start, start + len(f.bubbles))
        x, o = fill[span], off[span] | ring[span] | light[span] | (f.block in fit.unfit)
        judged = _judge_field(f, x, o, np.where(o, 0.0, _confidence(x)))
        if "ambiguous" not in judged[1] and not np.array_equal(x >= MARKED, second.marked[span]):
            differ.append(f.label)
            judged = (judged[0], [*judged[1], "ambiguous"], min(judged[2], 0.5))
        fields[f.label] = judged
        bubbles += [
            (replace(b, x=b.x + int(dx), y=b.y + int(dy)), f.label, _state(float(v), bool(w)))
            for b, v, w, (dx, dy) in zip(f.bubbles, x, o, fit.shifts[span])
        ]
        start = span.stop
    columns = {
        c: _join_parts([fields[p] for p in template.custom_labels[c]])
        if c in template.custom_labels
        else fields[c]
        for c in template.columns
    }
    reasons = [f"field block {name} does not fit: {why}" for name, why in fit.unfit.items()]
    names = [f.label for f in template.fields]
    for doubt, what in (
        (ring, "a ring drawn round an empty bubble"),
        (light, "a light fill in a blank question"),
    ):
        if doubt.any():
            reasons.append(f"{what}: " + ", ".join(dict.fromkeys(names[i] for i in lay.field[doubt])))
    if differ:
        reasons.append("a second reading differs: " + ", ".join(differ))
    blank = sum("blank" in v[1] for v in fields.values())
    note = mostly_blank_but_two_valued(second, blank, len(fields), int((fill >= MARKED).sum()))
    if note:
        reasons.append(note)
    return PageReading(
        {c: v[0] for c, v in columns.items()},
        {c: v[1] for c, v in columns.items()},
        {c: round(v[2], 3) for c, v in columns.items()},
        reasons,
        fit,
        bubbles,
    )


def _unfit_reasons(fit: Fit) -> str:
    return "; ".join(f"{name}: {why}" for name, why in fit.unfit.items())


def _state(x: float, off: bool) -> str:
    return "ambiguous" if off or BLANK <= x < MARKED else "marked" if x >= MARKED else "blank"


def read_answers(
    page: np.ndarray, template: Template
) -> tuple[dict[str, str], dict[str, list[str]], dict[str, float]]:
    """Answers, flags and confidence per output column, from an aligned page."""
    r = read_page(page, template)
    return r.answers, r.flags, r.confidence


def bubble_states(page: np.ndarray, template: Template) -> list[tuple[Bubble, str, str]]:
    """(bubble where it was read, its field's label, 'marked' | 'ambiguous' | 'blank') as
    read_answers judges it: what a reviewer needs to see drawn over the page."""
    return read_page(page, template).bubbles


def _field_relative(fill: np.ndarray, field: np.ndarray) -> np.ndarray:
    """A field's bubbles sit side by side, so a shadow or a box drawn a little off its print
    shows in all of them: each field's least-filled bubble (one is normally unmarked) is taken
    off its others, but never more than BLANK, so a field marked throughout still reads marked;
    a field of one bubble stays as it is."""
    least = np.full(field.max() + 1, np.inf)
    np.minimum.at(least, field, fill)
    alone = np.bincount(field)[field] < 2
    return np.where(alone, fill, np.clip(fill - np.minimum(least[field], BLANK), 0, 1))


def _kinds(template: Template) -> np.ndarray:
    """A number per bubble: equal for bubbles printed alike (same value and size)."""
    keys = [(b.value, b.w, b.h) for f in template.fields for b in f.bubbles]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return np.array([index[k] for k in keys])


def _judge_field(
    f: Field, fill: np.ndarray, off: np.ndarray, conf: np.ndarray
) -> tuple[str, list[str], float]:
    marked = [b.value for b, x in zip(f.bubbles, fill) if x >= MARKED]
    flags = {
        "blank": not marked,
        "multiple": len(marked) > 1,
        "ambiguous": bool(((fill >= BLANK) & (fill < MARKED)).any() or off.any()),
    }
    return "".join(marked) or f.empty_value, [k for k in FLAG_ORDER if flags[k]], float(conf.min())


def _join_parts(parts: list[tuple[str, list[str], float]]) -> tuple[str, list[str], float]:
    """A custom label concatenates its fields; any blank or multiple part makes it ambiguous."""
    flags = {
        "blank": all("blank" in p[1] for p in parts),
        "multiple": any("multiple" in p[1] for p in parts),
        "ambiguous": any(p[1] for p in parts),
    }
    confidence = min(p[2] for p in parts)
    if flags["ambiguous"]:
        confidence = min(confidence, 0.5)
    return "".join(p[0] for p in parts), [k for k in FLAG_ORDER if flags[k]], confidence
