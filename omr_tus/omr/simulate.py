"""A scan simulator with known truth, for tests and benchmarks of the reader.

Marks are drawn the way people make them (pencil fills, faint fills, erased ghosts, ticks; or
with a given pen: solid or scribbled ballpoint, felt-tip, blue ink) and the page then goes
through what a scanner, a copier or a phone camera does to it. Everything is drawn from one
numpy Generator, so a seed gives the same sheet every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .reader import INNER
from .render import OWN, SHIFT, Print, fixed, render_sheet
from .template import Bubble, Field, Template

INK = (0.65, 0.85)  # darkness of a pencil fill
FAINT = (0.42, 0.55)  # a light but deliberate fill
GHOST = (0.08, 0.2)  # what an erased fill leaves
TICK_COVER = (0.22, 0.36)  # share of the inner disc a tick or slash covers: neither blank nor marked


@dataclass(frozen=True)
class Pen:
    """How one kind of mark is made: how dark and grainy, how much of the bubble it covers
    (radii as shares of the bubble's half-size; above 1 it spills over the outline), how soft
    its edge is (share of the bubble's size), and its colour (BGR; None: graphite grey)."""

    darkness: tuple[float, float]
    grain: float
    cover: tuple[float, float]
    softness: float = 0.0
    colour: tuple[int, int, int] | None = None
    scribble: int = 0  # strokes of a hasty back-and-forth fill (0: a solid fill)


PENCIL = Pen((0.5, 0.78), 0.12, (0.78, 0.95))
BALLPOINT = Pen((0.88, 0.97), 0.03, (0.9, 1.02))
FELT_TIP = Pen((0.9, 0.98), 0.02, (1.02, 1.25), softness=0.06)
BLUE_INK = Pen((0.8, 0.95), 0.04, (0.88, 1.02), colour=(165, 70, 25))
SCRIBBLE = Pen((0.85, 0.95), 0.03, (0.85, 1.05), scribble=3)


@dataclass(frozen=True)
class Difficulty:
    max_rotation: float  # degrees either way
    perspective: float  # corner jitter, share of the page size
    quarter_turns: tuple[int, ...]  # 90° turns to choose from
    blur: tuple[float, float]  # Gaussian sigma in canonical pixels
    noise: tuple[float, float]  # sigma in grey levels
    jpeg: tuple[int, int]  # quality
    dpi: tuple[int, ...]  # scan resolutions to choose from (the page is 200 dpi)
    faint: float = 0.0  # share of marks drawn faint
    ghosts: int = 0  # erased fills per sheet, at most
    ticks: float = 0.0  # chance that a sheet carries one tick or slash
    blank: float = 0.05  # share of questions left blank
    multiple: float = 0.03  # share of questions with two marks
    backdrop: tuple[int, int] = (200, 245)  # grey level of what lies around the page
    texture: float = 0.0  # grey-level sigma of the backdrop's texture (cloth, wood)
    tilt: float = 0.0  # keystone of a camera held at an angle, share of the width
    shadow: float = 0.0  # darkest share a soft shadow takes off part of the page
    contrast: tuple[float, float] = (1.0, 1.0)  # share of the tonal range kept (a faded copy)
    margin: float = 0.02  # backdrop round the page, share of its longer side
    enhance: bool = False  # a document-scanner app's clean-up: paper white, ink deep, sharpened
    curl: float = 0.0  # bow of a sheet not lying flat, share of the image height


EASY = Difficulty(2, 0.0, (0,), (0.3, 0.7), (1, 3), (85, 90), (200, 300))
MEDIUM = Difficulty(7, 0.012, (0,), (0.5, 1.0), (2, 5), (60, 60), (150,), faint=0.05, ghosts=1)
HARD = Difficulty(
    7, 0.008, (0, 1, 2, 3), (0.5, 1.0), (2, 5), (50, 75), (150, 200, 300), faint=0.3, ghosts=4, ticks=0.4
)


@dataclass
class SimulatedSheet:
    image: np.ndarray
    task_id: str
    student_id: str
    answers: dict[str, str]  # field label -> values marked (what the student meant)
    truth: dict[str, str | None]  # output column -> value; None: the reader must flag it


def random_answers(
    template: Template, rng: np.random.Generator, blank: float = 0.05, multiple: float = 0.03
) -> tuple[str, dict[str, str]]:
    """A student id (bubbled into `student_id` if the template has it) and {field: values}."""
    fields = template.field_map()
    id_parts = template.custom_labels.get("student_id", ())
    answers = {p: str(rng.choice([b.value for b in fields[p].bubbles])) for p in id_parts}
    student_id = "".join(answers.values()) or "".join(rng.choice(list("0123456789"), size=8))
    for f in template.fields:
        if f.label in answers:
            continue
        roll = rng.random()
        count = 0 if roll < blank else 2 if roll < blank + multiple else 1
        picked = sorted(rng.choice(len(f.bubbles), size=min(count, len(f.bubbles)), replace=False))
        answers[f.label] = "".join(f.bubbles[i].value for i in picked)
    return student_id, answers


def simulate_sheet(
    template: Template,
    rng: np.random.Generator,
    level: Difficulty,
    task_id: str = "11600111",
    background: int | None = None,
    style: Print = OWN,
) -> SimulatedSheet:
    """Render, mark by hand, scan: one sheet with its truth."""
    student_id, answers = random_answers(template, rng, level.blank, level.multiple)
    page = render_sheet(template, task_id, student_id, style=style)
    doubtful = mark_sheet(page, template, answers, rng, level)
    image = scan(page, rng, level, background)
    return SimulatedSheet(image, task_id, student_id, answers, column_truth(template, answers, doubtful))


def column_truth(template: Template, answers: dict[str, str], doubtful: set[str]) -> dict[str, str | None]:
    """What a correct reader reports per column; None where it must flag the column instead
    (a tick, or a custom label with a blank or multiple part)."""
    fields = template.field_map()

    def value(label: str) -> str | None:
        return None if label in doubtful else answers[label] or fields[label].empty_value

    def marks(label: str) -> int:  # as mark_sheet draws them: a value may be several characters
        return sum(b.value in answers[label] for b in fields[label].bubbles)

    truth = {}
    for column in template.columns:
        parts = template.custom_labels.get(column)
        if parts is None:
            truth[column] = value(column)
        elif all(p not in doubtful and marks(p) == 1 for p in parts):
            truth[column] = "".join(answers[p] for p in parts)
        else:
            truth[column] = None
    return truth


def mark_sheet(
    page: np.ndarray,
    template: Template,
    answers: dict[str, str],
    rng: np.random.Generator,
    level: Difficulty,
    pen: Pen | None = None,
) -> set[str]:
    """Draws the answers in pencil (or with `pen`; the page is BGR for a coloured one), plus
    ghosts and ticks; returns the fields given a tick."""
    fields = template.field_map()
    free: list[tuple[Field, Bubble]] = []
    for label, values in answers.items():
        for b in fields[label].bubbles:
            if pen is not None and b.value in values:
                _pen_fill(page, b, rng, pen)
            elif b.value in values:
                _fill(page, b, rng, FAINT if rng.random() < level.faint else INK)
            else:
                free.append((fields[label], b))
    doubtful = set()
    order = rng.permutation(len(free))
    ghosts = int(rng.integers(0, level.ghosts + 1))
    for i in order[:ghosts]:
        _fill(page, free[i][1], rng, GHOST)
    if rng.random() < level.ticks and len(order) > ghosts:
        f, b = free[order[ghosts]]
        _tick(page, b, rng)
        doubtful.add(f.label)
    return doubtful


def _patch(page: np.ndarray, b: Bubble) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A view of the page around bubble `b`, an empty mask of its size, and the bubble's centre
    in patch coordinates: marks are drawn locally, not on page-sized masks."""
    x0, y0 = max(0, b.x - b.w), max(0, b.y - b.h)
    region = page[y0 : b.y + 2 * b.h, x0 : b.x + 2 * b.w]
    return region, np.zeros(region.shape[:2], np.uint8), (b.x + b.w / 2 - x0, b.y + b.h / 2 - y0)


def _fill(page: np.ndarray, b: Bubble, rng: np.random.Generator, darkness: tuple[float, float]) -> None:
    """A slightly off-centre, grainy pencil fill of the bubble."""
    region, mask, (cx, cy) = _patch(page, b)
    center = (round(cx + rng.normal(0, 0.04 * b.w)), round(cy + rng.normal(0, 0.04 * b.h)))
    axes = (round(b.w / 2 * rng.uniform(0.8, 0.95)), round(b.h / 2 * rng.uniform(0.8, 0.95)))
    cv2.ellipse(mask, center, axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    _shade(region, mask, rng, rng.uniform(*darkness))


def _shade(region: np.ndarray, mask: np.ndarray, rng: np.random.Generator, darkness: float) -> None:
    """Darkens `region` in place where `mask` is set, with pencil grain."""
    grain = np.clip(darkness + rng.normal(0, 0.04, region.shape[:2]), 0, 1)
    shade = 255 * (1 - grain * mask / 255.0)
    region[:] = np.minimum(region, shade if region.ndim == 2 else shade[:, :, None]).astype(np.uint8)


def _pen_fill(page: np.ndarray, b: Bubble, rng: np.random.Generator, pen: Pen) -> None:
    """A fill with `pen`: ink laid over the paper in the pen's colour, its grain in streaks
    (a pencil's strokes run one way), its edge as soft as the pen's tip."""
    region, mask, (cx, cy) = _patch(page, b)
    center = fixed(cx - 0.5 + rng.normal(0, 0.03 * b.w), cy - 0.5 + rng.normal(0, 0.03 * b.h))
    axes = fixed(b.w / 2 * rng.uniform(*pen.cover), b.h / 2 * rng.uniform(*pen.cover))
    cv2.ellipse(mask, center, axes, rng.uniform(-8, 8), 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
    if pen.scribble:
        mask &= _zigzag(mask.shape, b, (cx, cy), pen.scribble, rng)
    alpha: np.ndarray = mask.astype(np.float32) / 255
    if pen.softness:
        alpha = cv2.GaussianBlur(alpha, (0, 0), pen.softness * min(b.w, b.h))
    streaks: np.ndarray = cv2.GaussianBlur(
        rng.normal(0, 1, alpha.shape).astype(np.float32), (0, 0), 2.0, sigmaY=0.4
    )
    streaks *= pen.grain / max(float(streaks.std()), 1e-6)
    alpha *= np.clip(rng.uniform(*pen.darkness) + streaks, 0, 1)
    ink = np.array(pen.colour if region.ndim == 3 and pen.colour else 0, np.float32)
    if region.ndim == 3:
        alpha = alpha[:, :, None]
    inked = region * (1 - alpha) + ink * alpha
    region[:] = np.minimum(region, np.clip(inked, 0, 255)).astype(np.uint8)


def _zigzag(
    shape: tuple[int, int], b: Bubble, centre: tuple[float, float], strokes: int, rng: np.random.Generator
) -> np.ndarray:
    """A back-and-forth line across the bubble, `strokes` passes a little apart, with the
    paper showing between them: how a hurried ballpoint fills a bubble."""
    cx, cy = centre
    ys = np.linspace(cy - b.h * 0.55, cy + b.h * 0.55, strokes * 2)
    xs = np.where(np.arange(len(ys)) % 2, cx + b.w * 0.6, cx - b.w * 0.6) + rng.normal(0, 0.05 * b.w, len(ys))
    line = np.zeros(shape, np.uint8)
    points = np.stack([xs, ys + rng.normal(0, 0.03 * b.h, len(ys))], 1)
    thickness = max(1, round(0.1 * b.h))
    cv2.polylines(
        line,
        [np.array(fixed(*points.ravel()), np.int32).reshape(-1, 1, 2)],
        False,
        255,
        thickness,
        cv2.LINE_AA,
        SHIFT,
    )
    return line


def _tick(page: np.ndarray, b: Bubble, rng: np.random.Generator) -> None:
    """A slash or a check mark whose stroke covers TICK_COVER of the bubble's inner disc."""
    region, inner, (cx, cy) = _patch(page, b)
    r = min(b.w, b.h) / 2
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * r * 1.1, np.sin(angle) * r * 1.1
        strokes = [((cx - dx, cy - dy), (cx + dx, cy + dy))]
    else:
        strokes = [
            ((cx - 0.7 * r, cy - 0.1 * r), (cx - 0.1 * r, cy + 0.5 * r)),
            ((cx - 0.1 * r, cy + 0.5 * r), (cx + 0.8 * r, cy - 0.9 * r)),
        ]
    cv2.circle(inner, (round(cx), round(cy)), round(INNER * r), 255, -1)
    target = rng.uniform(*TICK_COVER)
    best = min(
        (_stroke_mask(inner.shape, strokes, t) for t in range(2, round(r))),
        key=lambda m: abs((m & inner).sum() / inner.sum() - target),
    )
    _shade(region, best, rng, rng.uniform(*INK))


def _stroke_mask(shape: tuple[int, int], strokes, thickness: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for p, q in strokes:
        cv2.line(mask, tuple(map(round, p)), tuple(map(round, q)), 255, thickness)
    return mask


def scan(
    page: np.ndarray, rng: np.random.Generator, level: Difficulty, background: int | None = None
) -> np.ndarray:
    """What a scanner, copier or camera returns for `page`: turned, skewed, resampled, blurred,
    uneven light, shadow, faded, noise and JPEG. A grey page comes back grey or BGR at random, a
    BGR page in colour. `background` is the grey level of what lies around the page."""
    page = cv2.GaussianBlur(page, (0, 0), rng.uniform(*level.blur))
    page = np.ascontiguousarray(np.rot90(page, int(rng.choice(level.quarter_turns))))
    matrix, size = _scan_geometry(page.shape[:2], rng, level)
    bg = int(rng.uniform(*level.backdrop)) if background is None else background
    image = _place(page, matrix, size, bg, rng, level.texture)
    if level.curl:
        image = _curled(image, rng, level.curl)
    image = _photometry(image, rng, level)
    quality = int(rng.integers(level.jpeg[0], level.jpeg[1] + 1))
    _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR if image.ndim == 3 else cv2.IMREAD_GRAYSCALE)
    assert decoded is not None, "a JPEG encoded here decodes"
    if image.ndim == 3:
        return decoded
    return cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR) if rng.random() < 0.5 else decoded


def _place(
    page: np.ndarray,
    matrix: np.ndarray,
    size: tuple[int, int],
    bg: int,
    rng: np.random.Generator,
    texture: float,
) -> np.ndarray:
    """The page warped onto a backdrop of grey level `bg`, plain or textured like cloth."""
    if not texture:
        border = bg if page.ndim == 2 else (bg, bg, bg)
        return cv2.warpPerspective(page, matrix, size, flags=cv2.INTER_LINEAR, borderValue=border)
    w, h = size
    weave = cv2.resize(rng.normal(0, 1, (h // 6 + 1, w // 6 + 1)).astype(np.float32), (w, h))
    backdrop = np.clip(bg + texture * weave / max(float(weave.std()), 1e-6), 0, 255).astype(np.uint8)
    if page.ndim == 3:
        backdrop = cv2.cvtColor(backdrop, cv2.COLOR_GRAY2BGR)
    return cv2.warpPerspective(
        page, matrix, size, backdrop, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT
    )


def _curled(image: np.ndarray, rng: np.random.Generator, curl: float) -> np.ndarray:
    """The picture of a sheet that does not lie flat: rows bow (most at one end of the sheet),
    which no homography undoes."""
    h, w = image.shape[:2]
    amplitude, phase = rng.uniform(0.5, 1) * curl * h, rng.uniform(0, np.pi)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    bow = (amplitude * np.sin(np.pi * xs / w + phase)).astype(np.float32) * (ys / h)
    return cv2.remap(image, xs, ys + bow, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _scan_geometry(
    shape: tuple[int, int], rng: np.random.Generator, level: Difficulty
) -> tuple[np.ndarray, tuple[int, int]]:
    """Homography page -> scan (rotation, corner jitter, a camera's keystone, dpi scale) and
    the scan's size."""
    h, w = shape
    scale = int(rng.choice(level.dpi)) / 200
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    theta = np.radians(rng.uniform(-level.max_rotation, level.max_rotation))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shaped = corners.copy()
    if level.tilt:  # the far edge of a sheet photographed at an angle comes out shorter
        far = rng.integers(0, 4)
        edge = [far, (far + 1) % 4]
        inward = corners[edge].mean(0) - corners[[(far + 2) % 4, (far + 3) % 4]].mean(0)
        along = corners[edge[1]] - corners[edge[0]]
        shrink = rng.uniform(0.3, 1) * level.tilt * along / 2
        shaped[edge[0]] += shrink
        shaped[edge[1]] -= shrink
        shaped[edge] -= 0.3 * level.tilt * inward
    moved = (shaped - [w / 2, h / 2]) @ rot.T + rng.normal(0, level.perspective * max(w, h), (4, 2))
    moved *= scale
    margin = level.margin * scale * max(w, h)
    moved += margin - moved.min(0)
    width, height = (int(v) for v in np.ceil(moved.max(0) + margin))
    return cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)), (width, height)


def _photometry(image: np.ndarray, rng: np.random.Generator, level: Difficulty) -> np.ndarray:
    """Paper tone, a gentle light gradient across the sheet, a soft shadow, a faded tonal range
    and sensor noise (uniform with the chosen sigma: ten times cheaper to draw than Gaussian
    noise on a 300 dpi page)."""
    h, w = image.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    rx = np.cos(angle) * np.arange(w, dtype=np.float32) / w
    ry = np.sin(angle) * np.arange(h, dtype=np.float32) / h
    tone, fade = rng.uniform(0.9, 1.0), rng.uniform(0, 0.08)
    light = tone * (1 - fade * ((rx - rx.min())[None, :] + (ry - ry.min())[:, None]))
    if level.shadow:
        light = light * _shadow(h, w, rng, level.shadow)
    if image.ndim == 3:
        light = light[:, :, None]
    out = image * light
    if level.contrast[0] < 1:
        keep, top = rng.uniform(*level.contrast), rng.uniform(205, 235)
        out = top * (1 - keep) + out * (top / 255) * keep
    noise = np.frombuffer(rng.bytes(h * w), np.uint8).reshape(h, w).astype(np.float32)
    noise = (noise - 127.5) * (rng.uniform(*level.noise) * np.sqrt(12) / 256)
    out = np.clip(out + (noise if image.ndim == 2 else noise[:, :, None]), 0, 255)
    return (_enhanced(out) if level.enhance else out).astype(np.uint8)


def _enhanced(image: np.ndarray) -> np.ndarray:
    """What a phone's document-scanner app makes of a page: the paper stretched to white and
    the ink to black (percentiles, so a few specks do not set the range), then sharpened."""
    low, high = np.percentile(image, (1, 60))
    stretched = np.clip((image - low) * (255 / max(high - low, 1)), 0, 255).astype(np.float32)
    return np.clip(cv2.addWeighted(stretched, 1.6, cv2.GaussianBlur(stretched, (0, 0), 1.2), -0.6, 0), 0, 255)


def _shadow(h: int, w: int, rng: np.random.Generator, depth: float) -> np.ndarray:
    """Light multiplier of a hand or phone's soft shadow: a blurred half-plane through the page."""
    angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    side = (np.cos(angle) * (xs / w - 0.5) + np.sin(angle) * (ys / h - 0.5)) + 0.5 - offset
    return 1 - rng.uniform(0.5, 1) * depth * np.clip(0.5 + side * 6, 0, 1)
