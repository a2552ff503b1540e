"""One maker per adversarial idea: rng -> (image, template, truth)."""

from __future__ import annotations

import cv2
import numpy as np

from omr_tus.omr.render import DARK_VALUES, OWN
from omr_tus.omr.template import Template
from tests.adversary import harness as h

FORM, OWN_T = h.FORM, h.OWN_TEMPLATE


def _custom(rng):
    return h.sheet(h.custom_template(), rng)


def _partial(rng):
    return h.sheet(FORM, rng, h.mark_some(h.partial, 3))


def _x(rng):
    return h.sheet(FORM, rng, h.mark_some(h.x_mark, 3))


def _circled(rng, raw=FORM, style=DARK_VALUES):
    """A ring drawn round an empty bubble of a blank question (the student circling an answer):
    the question must be flagged, not read `ok` as blank."""

    def extra(page, template, answers, rng):
        blanks = [f for f in template.fields if f.label in answers and not answers[f.label]]
        out = set()
        for f in blanks[:2]:
            h.circled(page, f.bubbles[int(rng.integers(len(f.bubbles)))], rng)
            out.add(f.label)
        return out

    return h.sheet(raw, rng, extra, style=style)


def _light_pencil(rng):
    return h.sheet(FORM, rng, darkness=(0.2, 0.35))


def _very_light_some(rng, darkness=(0.22, 0.3), raw=FORM, style=DARK_VALUES):
    # most marks dark, a few very light (but full) marks: read as marks or flagged, never blank-ok
    def extra(page, template, answers, rng):
        free = [f for f in template.fields if f.label in answers and not answers[f.label]]
        out = set()
        for f in free[:3]:
            b = f.bubbles[int(rng.integers(len(f.bubbles)))]
            h.solid(page, b, rng, darkness)
            answers[f.label] = b.value
        return out

    return h.sheet(raw, rng, extra, style=style)


def _bleed(rng, strength=(0.2, 0.35)):
    """Marks of the back side showing through, mirrored and faint: must read as blank."""
    template = Template.parse(FORM)
    answers = h.answers_for(template, rng)
    page = h.render(template)
    back = np.full_like(page, 255)
    h.fill_all(back, template, h.answers_for(template, rng), rng)
    back = cv2.GaussianBlur(np.fliplr(back), (0, 0), 2.5)
    ghost = 1 - (255 - back.astype(np.float32)) / 255 * rng.uniform(*strength)
    page = (page * ghost).astype(np.uint8)
    h.fill_all(page, template, answers, rng)
    image = h.simulate.scan(page, rng, h.SCANNER)
    return image, template, h.truth_of(template, answers, set())


def _stray(rng):
    def extra(page, template, answers, rng):
        for _ in range(30):
            f = template.fields[int(rng.integers(len(template.fields)))]
            b = f.bubbles[0]
            x, y = b.x + rng.uniform(-b.w, 4 * b.w), b.y + rng.uniform(-b.h, b.h)
            cv2.line(
                page, (int(x), int(y)), (int(x + rng.uniform(-15, 15)), int(y + rng.uniform(-15, 15))), 20, 2
            )
        return set()

    return h.sheet(FORM, rng, extra)


def _stain(rng):
    def post(image, rng):
        hh, ww = image.shape[:2]
        mask = np.zeros((hh, ww), np.float32)
        for _ in range(2):
            cv2.circle(
                mask, (int(rng.uniform(0, ww)), int(rng.uniform(0, hh))), int(rng.uniform(60, 200)), 1.0, -1
            )
        mask = cv2.GaussianBlur(mask, (0, 0), 15) * rng.uniform(0.25, 0.45)
        if image.ndim == 3:
            mask = mask[:, :, None] * np.array([0.6, 0.8, 1.0], np.float32)
        return np.clip(image * (1 - mask), 0, 255).astype(np.uint8)

    return h.sheet(FORM, rng, post=post)


def _fold(rng):
    def post(image, rng):
        hh, ww = image.shape[:2]
        out = image.astype(np.float32)
        y = int(rng.uniform(0.3, 0.7) * hh)
        band = np.exp(-(((np.arange(hh) - y) / 6.0) ** 2)) * 90
        out -= band[:, None] if image.ndim == 2 else band[:, None, None]
        x = int(rng.uniform(0.3, 0.7) * ww)
        band = np.exp(-(((np.arange(ww) - x) / 6.0) ** 2)) * 90
        out -= band[None, :] if image.ndim == 2 else band[None, :, None]
        return np.clip(out, 0, 255).astype(np.uint8)

    return h.sheet(FORM, rng, post=post)


def _holes(rng):
    def post(image, rng):
        hh, ww = image.shape[:2]
        out = image.copy()
        for frac in (0.25, 0.5, 0.75):
            cv2.circle(out, (int(0.03 * ww), int(frac * hh)), int(0.012 * ww), (40, 40, 40), -1)
        cv2.line(out, (10, 10), (int(0.08 * ww), int(0.05 * hh)), (60, 60, 60), 6)
        return out

    return h.sheet(FORM, rng, post=post)


def _turn(k):
    def make(rng):
        return h.sheet(FORM, rng, post=lambda img, r: np.ascontiguousarray(np.rot90(img, k)))

    return make


def _mirror(rng):
    return h.sheet(FORM, rng, post=lambda img, r: np.ascontiguousarray(np.fliplr(img)))


def _scale(rng):
    def post(img, r):
        f = r.uniform(0.6, 1.6)
        return cv2.resize(img, None, fx=f, fy=f)

    return h.sheet(FORM, rng, post=post)


def _cropped(rng):
    def post(img, r):
        hh, ww = img.shape[:2]
        side = int(r.integers(4))
        cut = r.uniform(0.04, 0.12)
        return [
            img[int(cut * hh) :],
            img[: int((1 - cut) * hh)],
            img[:, int(cut * ww) :],
            img[:, : int((1 - cut) * ww)],
        ][side]

    return h.sheet(FORM, rng, post=post)


def _wrong_task(rng):
    """A sheet of one form read with another form's template."""
    image, _, _ = h.sheet(h.custom_template(), rng)
    template = Template.parse(FORM)
    return image, template, {c: None for c in template.columns}


def _wrong_task_own(rng):
    image, _, _ = h.sheet(FORM, rng)
    template = Template.parse(h.custom_template())
    return image, template, {c: None for c in template.columns}


def _blank_page(rng):
    template = Template.parse(FORM)
    img = np.full((1600, 1200), int(rng.uniform(200, 255)), np.uint8)
    img = h.simulate.scan(img, rng, h.SCANNER)
    return img, template, {c: None for c in template.columns}


def _non_sheet(rng):
    template = Template.parse(FORM)
    img = np.full((1600, 1200), 240, np.uint8)
    for _ in range(60):
        cv2.putText(
            img,
            "lorem ipsum dolor",
            (int(rng.uniform(0, 900)), int(rng.uniform(0, 1600))),
            cv2.FONT_HERSHEY_SIMPLEX,
            rng.uniform(0.8, 2),
            20,
            2,
        )
    for _ in range(20):
        cv2.circle(
            img, (int(rng.uniform(0, 1200)), int(rng.uniform(0, 1600))), int(rng.uniform(5, 20)), 30, -1
        )
    img = h.simulate.scan(img, rng, h.SCANNER)
    return img, template, {c: None for c in template.columns}


def _formats(kind):
    def post(img, r):
        if kind == "u16":
            return img.astype(np.uint16) * 257
        if kind == "tiny":
            f = 200 / max(img.shape[:2])
            return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        if kind == "huge":
            f = 6000 / max(img.shape[:2])
            return cv2.resize(img, None, fx=f, fy=f)
        if kind == "bgra":
            return cv2.cvtColor(
                img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), cv2.COLOR_BGR2BGRA
            )
        if kind == "inverted":
            return 255 - img
        return img

    def make(rng):
        return h.sheet(FORM, rng, post=post)

    return make


def _own_partial(rng):
    return h.sheet(OWN_T, rng, h.mark_some(h.partial, 3), style=OWN)


def _own_light(rng):
    return h.sheet(OWN_T, rng, darkness=(0.2, 0.35), style=OWN)


def _crossed_then_filled(rng):
    """One answer filled, crossed out with an X, another filled: truth is the other (or flagged)."""

    def extra(page, template, answers, rng):
        out = set()
        for f in [f for f in template.fields if len(answers.get(f.label, "")) == 1][:3]:
            old = next(b for b in f.bubbles if b.value != answers[f.label])
            h.solid(page, old, rng)
            h.x_mark(page, old, rng)  # invisible on a black fill: a human can't tell either
            out.add(f.label)
        return out

    return h.sheet(FORM, rng, extra)


def _handwriting(rng):
    def extra(page, template, answers, rng):
        for f in template.fields[::7]:
            b = f.bubbles[-1]
            cv2.putText(page, "ok?", (b.x + b.w + 4, b.y + b.h), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 0.6, 30, 1)
        return set()

    return h.sheet(FORM, rng, extra)


def _offset_fills(rng):
    """Every fill drawn a third of a bubble off its centre, partly outside the outline (a hurried
    student): each must be read, or its question flagged."""

    def extra(page, template, answers, rng):
        fields, clean = template.field_map(), h.render(template)
        for label, values in answers.items():
            for b in fields[label].bubbles:
                if b.value in values:
                    box = np.s_[b.y - 2 : b.y + b.h + 2, b.x - 2 : b.x + b.w + 2]
                    page[box] = clean[box]
                    angle = rng.uniform(0, 2 * np.pi)
                    cx, cy = h.centre(b)
                    dx, dy = np.cos(angle) * b.w / 3, np.sin(angle) * b.h / 3
                    h.ink(page, h.disc(page.shape, b, cx + dx, cy + dy, 0.95), rng.uniform(0.85, 0.95))
        return set()

    return h.sheet(FORM, rng, extra)


def _thick_outlines(rng):
    """Bubbles printed with outlines three times as heavy (another printer, another form)."""

    def extra(page, template, answers, rng):
        for f in template.fields:
            for b in f.bubbles:
                cx, cy = h.centre(b)
                cv2.ellipse(page, (round(cx), round(cy)), (b.w // 2, b.h // 2), 0, 0, 360, 40, 4, cv2.LINE_AA)
        return set()

    return h.sheet(FORM, rng, extra)


def _heavy_jpeg(rng):
    """A phone photo sent through a messenger: JPEG at quality 10-20."""

    def post(image, r):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(10, 21))])
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)

    return h.sheet(FORM, rng, post=post)


def _mismeasured(rng, scale=1.012):
    """The form printed with every gap 1.2 % wider than the template says (a template measured
    by hand off a copy): the last rows lie a third of a row off."""
    blocks = {
        n: {**b, "bubblesGap": b["bubblesGap"] * scale, "labelsGap": b["labelsGap"] * scale}
        for n, b in FORM["fieldBlocks"].items()
    }
    image, _, truth = h.sheet({**FORM, "fieldBlocks": blocks}, rng)
    return image, Template.parse(FORM), truth


IDEAS = {
    "custom_template": _custom,
    "custom_spaced": lambda rng: h.sheet(h.custom_template(560), rng),
    "partial_fill": _partial,
    "x_mark": _x,
    "circled": _circled,
    "light_pencil_all": _light_pencil,
    "very_light_some": _very_light_some,
    "bleed_through": _bleed,
    "light_some_030_040": lambda rng: _very_light_some(rng, (0.3, 0.4)),
    "light_some_015_022": lambda rng: _very_light_some(rng, (0.15, 0.22)),
    "light_some_own": lambda rng: _very_light_some(rng, (0.2, 0.3), OWN_T, OWN),
    "bleed_very_heavy": lambda rng: _bleed(rng, (0.55, 0.7)),
    "rot90_own": lambda rng: h.sheet(
        OWN_T, rng, style=OWN, post=lambda img, r: np.ascontiguousarray(np.rot90(img))
    ),
    "circled_own": lambda rng: _circled(rng, OWN_T, OWN),
    "bleed_heavy": lambda rng: _bleed(rng, (0.4, 0.55)),
    "stray_marks": _stray,
    "coffee_stain": _stain,
    "fold_lines": _fold,
    "punch_holes": _holes,
    "rot90": _turn(1),
    "rot180": _turn(2),
    "mirrored": _mirror,
    "scaled": _scale,
    "cropped_edge": _cropped,
    "wrong_task": _wrong_task,
    "wrong_task2": _wrong_task_own,
    "blank_page": _blank_page,
    "non_sheet": _non_sheet,
    "uint16": _formats("u16"),
    "tiny200": _formats("tiny"),
    "huge6000": _formats("huge"),
    "bgra": _formats("bgra"),
    "inverted": _formats("inverted"),
    "own_partial": _own_partial,
    "offset_fills": _offset_fills,
    "thick_outlines": _thick_outlines,
    "heavy_jpeg": _heavy_jpeg,
    "mismeasured_template": _mismeasured,
    "mismeasured_template_narrow": lambda rng: _mismeasured(rng, 0.99),
    "mismeasured_template_2pc": lambda rng: _mismeasured(rng, 1.02),
    "own_light": _own_light,
    "crossed_then_filled": _crossed_then_filled,
    "handwriting": _handwriting,
}
