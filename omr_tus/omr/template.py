"""OMRChecker `template.json` semantics, plus our `markers` and `qr` keys.

Parsing turns the template into absolute bubble boxes on the canonical page once, so the
reader and the renderer share one geometry and a bad template is refused with the key at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeGuard

import cv2
import numpy as np

from .errors import TemplateError
from .labels import expand_ranges
from .preprocess import Alignment, parse_steps, processing_size

FIELD_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "QTYPE_MCQ4": (tuple("ABCD"), "horizontal"),
    "QTYPE_MCQ5": (tuple("ABCDE"), "horizontal"),
    "QTYPE_INT": (tuple("0123456789"), "vertical"),
    "QTYPE_INT_FROM_1": (tuple("1234567890"), "vertical"),
    "QTYPE_MCQ4_RTL": (tuple("DCBA"), "horizontal"),  # right-to-left scripts: A is printed rightmost
    "QTYPE_MCQ5_RTL": (tuple("EDCBA"), "horizontal"),
}
DIRECTIONS = ("horizontal", "vertical")
KNOWN_KEYS = {
    "pageDimensions",
    "bubbleDimensions",
    "fieldBlocks",
    "customLabels",
    "outputColumns",
    "emptyValue",
    "markers",
    "qr",
    "preProcessors",
}
MAX_PAGE = 20000  # pixels a side: a sheet at 1200 dpi; beyond is a typo, not a page
MAX_BUBBLES = 100_000  # bubbles of one template
MAX_LABEL = 64  # characters of a label: an answer's column as the database stores it
NATURAL_CHUNK = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Bubble:
    value: str
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Field:
    label: str
    bubbles: tuple[Bubble, ...]
    empty_value: str
    block: str = ""  # the fieldBlocks name: bubbles printed together, so they move together


@dataclass(frozen=True)
class Markers:
    dictionary: str
    size: int
    positions: dict[int, tuple[int, int]]


@dataclass(frozen=True)
class QrBox:
    x: int
    y: int
    size: int


@dataclass(frozen=True)
class Thresholds:
    """OMRChecker's config `threshold_params` that its bubble thresholds use."""

    min_jump: float = 25.0
    confident_surplus: float = 5.0
    min_gap: float = 30.0


@dataclass(frozen=True)
class Template:
    page: tuple[int, int]
    fields: tuple[Field, ...]
    columns: tuple[str, ...]
    custom_labels: dict[str, tuple[str, ...]]
    empty_value: str
    markers: Markers | None
    qr: QrBox | None
    alignment: Alignment | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # OMRChecker keys we accept and ignore
    thresholds: Thresholds = Thresholds()

    @classmethod
    def parse(
        cls, data: dict, config: dict | None = None, assets: dict[str, bytes] | None = None
    ) -> Template:
        """Validates an OMRChecker template (plus `markers`/`qr`) with its config.json and the
        files its preProcessors name; raises TemplateError."""
        _require(isinstance(data, dict), "template", "must be a JSON object")
        page = _size_pair("pageDimensions", data.get("pageDimensions"))
        _require(max(page) <= MAX_PAGE, "pageDimensions", f"must be at most {MAX_PAGE} pixels")
        empty = _string(data, "emptyValue", "")
        fields = _parse_blocks(data, page, empty)
        labels = [f.label for f in fields]
        custom = _parse_custom_labels(data.get("customLabels", {}), set(labels))
        return cls(
            page=page,
            fields=tuple(fields),
            columns=_parse_columns(data.get("outputColumns"), labels, custom),
            custom_labels=custom,
            empty_value=empty,
            markers=_parse_markers(data["markers"], page) if "markers" in data else None,
            qr=_parse_qr(data["qr"], page) if "qr" in data else None,
            alignment=_parse_alignment(data, config, assets),
            extras={k: v for k, v in data.items() if k not in KNOWN_KEYS},
            thresholds=_parse_thresholds(config),
        )

    def field_map(self) -> dict[str, Field]:
        return {f.label: f for f in self.fields}

    @cached_property
    def layout(self) -> Layout:
        """Every bubble's box as arrays, in template order, with its block and the block's pitch."""
        boxes = np.array([(b.x, b.y, b.w, b.h) for f in self.fields for b in f.bubbles], np.int64)
        names = tuple(dict.fromkeys(f.block for f in self.fields))
        index = {n: i for i, n in enumerate(names)}
        block = np.array([index[f.block] for f in self.fields for _ in f.bubbles])
        size = np.array([boxes[block == i, 2:].max(0) for i in range(len(names))], np.float64)
        pitch = np.array([[_pitch(boxes[block == i], axis) for axis in (0, 1)] for i in range(len(names))])
        per_field = [{len(f.bubbles) for f in self.fields if f.block == n} for n in names]
        fields = np.array([min(s) if len(s) == 1 else 0 for s in per_field])
        field = np.repeat(np.arange(len(self.fields)), [len(f.bubbles) for f in self.fields])
        return Layout(boxes, block, names, size, np.where(np.isfinite(pitch), pitch, 4 * size), fields, field)


@dataclass(frozen=True)
class Layout:
    boxes: np.ndarray  # (bubbles, 4) x, y, w, h
    block: np.ndarray  # (bubbles,) index into names
    names: tuple[str, ...]  # block names, in template order
    size: np.ndarray  # (blocks, 2) largest bubble width, height
    pitch: np.ndarray  # (blocks, 2) distance between neighbouring bubble centres along x, y
    fields: np.ndarray  # (blocks,) bubbles in each of the block's fields (0: they differ)
    field: np.ndarray  # (bubbles,) index of each bubble's field in Template.fields


def _pitch(boxes: np.ndarray, axis: int) -> float:
    """The least distance between centres of bubbles in line along `axis` (inf for a lone one)."""
    centres = boxes[:, axis] + boxes[:, 2 + axis] / 2
    across = boxes[:, 1 - axis] + boxes[:, 3 - axis] / 2
    tolerance = boxes[:, 3 - axis].max() / 2
    best = np.inf
    for value in np.unique(across):
        gaps = np.diff(np.unique(centres[np.abs(across - value) < tolerance]))
        if gaps.size:
            best = min(best, float(gaps.min()))
    return best


def _require(ok: object, key: str, message: str) -> None:
    if not ok:
        raise TemplateError(key, message)


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _gap(obj: dict, key: str, path: str) -> float:
    v = obj.get(key)
    if not (_is_number(v) and v >= 0):
        raise TemplateError(path, "must be a number >= 0")
    return float(v)


def _pair(path: str, v: Any, minimum: float) -> tuple[float, float]:
    ok = isinstance(v, list) and len(v) == 2 and all(_is_number(n) and n >= minimum for n in v)
    _require(ok, path, f"must be a pair of numbers >= {minimum}")
    return float(v[0]), float(v[1])


def _size_pair(path: str, v: Any) -> tuple[int, int]:
    w, h = _pair(path, v, 1)
    return round(w), round(h)


def _string(obj: dict, key: str, default: str, path: str | None = None) -> str:
    v = obj.get(key, default)
    _require(isinstance(v, str), path or key, "must be a string")
    return v


def expand_labels(items: Any, path: str) -> list[str]:
    """`["q1..3", "x"]` -> `["q1", "q2", "q3", "x"]` (OMRChecker ranges, prefix may hold digits)."""
    _require(
        isinstance(items, list) and items and all(isinstance(s, str) and s for s in items),
        path,
        "must be a non-empty list of strings",
    )
    try:
        out = expand_ranges(items)
    except ValueError as exc:
        raise TemplateError(path, str(exc)) from None
    _require(len(set(out)) == len(out), path, "repeats a label")
    _require(
        all(len(label) <= MAX_LABEL for label in out), path, f"labels are at most {MAX_LABEL} characters"
    )
    return out


def natural_key(label: str) -> tuple:
    """Sort key 'q2' < 'q10' — OMRChecker sorts its output columns this way."""
    return tuple((1, int(c), "") if c.isdigit() else (0, 0, c) for c in NATURAL_CHUNK.split(label) if c)


def _parse_blocks(data: dict, page: tuple[int, int], empty: str) -> list[Field]:
    blocks = data.get("fieldBlocks") or {}
    _require(isinstance(blocks, dict) and blocks, "fieldBlocks", "must be a non-empty object")
    fields: list[Field] = []
    seen: set[str] = set()
    bubbles = 0
    for name, block in blocks.items():
        block_fields = _parse_block(data, name, block, page, empty)
        bubbles += sum(len(f.bubbles) for f in block_fields)
        _require(
            bubbles <= MAX_BUBBLES, f"fieldBlocks.{name}", f"brings the template past {MAX_BUBBLES} bubbles"
        )
        for f in block_fields:
            _require(
                f.label not in seen, f"fieldBlocks.{name}.fieldLabels", f"label {f.label!r} is used twice"
            )
            seen.add(f.label)
        fields.extend(block_fields)
    return fields


def _block_values(block: dict, path: str) -> tuple[tuple[str, ...], str]:
    values: tuple[str, ...] = ()
    direction = ""
    if "fieldType" in block:
        ftype = block["fieldType"]
        _require(ftype in FIELD_TYPES, f"{path}.fieldType", f"unknown type {ftype!r}")
        values, direction = FIELD_TYPES[ftype]
    if "bubbleValues" in block:
        v = block["bubbleValues"]
        _require(
            isinstance(v, list) and v and all(isinstance(s, str) for s in v),
            f"{path}.bubbleValues",
            "must be a non-empty list of strings",
        )
        values = tuple(v)
    direction = block.get("direction", direction)
    _require(bool(values), f"{path}.fieldType", "needs a fieldType or bubbleValues")
    _require(direction in DIRECTIONS, f"{path}.direction", "must be 'horizontal' or 'vertical'")
    return values, direction


def _parse_block(data: dict, name: str, block: Any, page: tuple[int, int], empty: str) -> list[Field]:
    """One block's fields; 'horizontal' puts a field's bubbles along x and steps fields along y."""
    path = f"fieldBlocks.{name}"
    _require(isinstance(block, dict), path, "must be an object")
    values, direction = _block_values(block, path)
    bubble_dims = block.get("bubbleDimensions", data.get("bubbleDimensions"))
    _require(bubble_dims is not None, f"{path}.bubbleDimensions", "missing (no global bubbleDimensions)")
    bw, bh = _size_pair(f"{path}.bubbleDimensions", bubble_dims)
    ox, oy = _pair(f"{path}.origin", block.get("origin"), 0)
    bubble_gap = _gap(block, "bubblesGap", f"{path}.bubblesGap")
    label_gap = _gap(block, "labelsGap", f"{path}.labelsGap")
    block_empty = _string(block, "emptyValue", empty, f"{path}.emptyValue")
    labels = expand_labels(block.get("fieldLabels"), f"{path}.fieldLabels")
    _require(len(labels) * len(values) <= MAX_BUBBLES, path, f"has more than {MAX_BUBBLES} bubbles")
    along, across = ((1, 0), (0, 1)) if direction == "horizontal" else ((0, 1), (1, 0))
    fields = []
    for i, label in enumerate(labels):
        bubbles = tuple(
            Bubble(
                value,
                round(ox + j * bubble_gap * along[0] + i * label_gap * across[0]),
                round(oy + j * bubble_gap * along[1] + i * label_gap * across[1]),
                bw,
                bh,
            )
            for j, value in enumerate(values)
        )
        fields.append(Field(label, bubbles, block_empty, name))
    last = fields[-1].bubbles[-1]
    _require(last.x + bw <= page[0] and last.y + bh <= page[1], path, "bubbles overflow the page")
    return fields


def _parse_custom_labels(raw: Any, labels: set[str]) -> dict[str, tuple[str, ...]]:
    _require(isinstance(raw, dict), "customLabels", "must be an object")
    custom: dict[str, tuple[str, ...]] = {}
    used: set[str] = set()
    for name, parts in raw.items():
        path = f"customLabels.{name}"
        _require(len(name) <= MAX_LABEL, path, f"labels are at most {MAX_LABEL} characters")
        expanded = expand_labels(parts, path)
        for part in expanded:
            _require(part in labels, path, f"unknown field {part!r}")
        _require(not used.intersection(expanded), path, "shares a field with another custom label")
        _require(name not in labels or name in expanded, path, "clashes with a field label")
        used.update(expanded)
        custom[name] = tuple(expanded)
    return custom


def _parse_columns(raw: Any, labels: list[str], custom: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """outputColumns if given, else custom labels and free fields in natural order (as OMRChecker)."""
    in_custom = {p for parts in custom.values() for p in parts}
    known = list(custom) + [label for label in labels if label not in in_custom]
    if raw is None:
        return tuple(sorted(known, key=natural_key))
    columns = expand_labels(raw, "outputColumns")
    for column in columns:
        _require(column in known or column in labels, "outputColumns", f"unknown column {column!r}")
    return tuple(columns)


def _int_pair(path: str, v: Any) -> tuple[int, int]:
    x, y = _pair(path, v, 0)
    return round(x), round(y)


def _inside(path: str, x: int, y: int, size: int, page: tuple[int, int]) -> None:
    _require(x + size <= page[0] and y + size <= page[1], path, "lies outside the page")


def _parse_markers(raw: Any, page: tuple[int, int]) -> Markers:
    """ArUco markers: any predefined dictionary, 3 or 4 distinct ids, top-left positions."""
    _require(isinstance(raw, dict), "markers", "must be an object")
    name = raw.get("dictionary")
    ok = isinstance(name, str) and name.startswith("DICT_") and hasattr(cv2.aruco, name)
    _require(ok, "markers.dictionary", f"{name!r} is not an OpenCV ArUco dictionary")
    count = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0]
    size = raw.get("size")
    _require(
        isinstance(size, int) and not isinstance(size, bool) and size >= 16,
        "markers.size",
        "must be an integer >= 16",
    )
    pos = raw.get("positions")
    _require(isinstance(pos, dict) and 3 <= len(pos) <= 4, "markers.positions", "must map 3 or 4 ids")
    positions: dict[int, tuple[int, int]] = {}
    for key, xy in pos.items():
        path = f"markers.positions.{key}"
        _require(
            isinstance(key, str) and key.isdigit() and int(key) < count,
            path,
            f"must be a marker id 0..{count - 1}",
        )
        _require(int(key) not in positions, path, "repeats a marker id")
        positions[int(key)] = _int_pair(path, xy)
        _inside(path, *positions[int(key)], size, page)
    return Markers(name, size, positions)


def _parse_qr(raw: Any, page: tuple[int, int]) -> QrBox:
    _require(isinstance(raw, dict), "qr", "must be an object")
    x, y = _int_pair("qr.origin", raw.get("origin"))
    size = raw.get("size")
    _require(
        isinstance(size, int) and not isinstance(size, bool) and size >= 40,
        "qr.size",
        "must be an integer >= 40",
    )
    _inside("qr", x, y, size, page)
    return QrBox(x, y, size)


def _parse_thresholds(config: dict | None) -> Thresholds:
    params = (config or {}).get("threshold_params") or {}
    _require(isinstance(params, dict), "config.threshold_params", "must be an object")
    values = {}
    for key, name in (
        ("MIN_JUMP", "min_jump"),
        ("CONFIDENT_SURPLUS", "confident_surplus"),
        ("MIN_GAP", "min_gap"),
    ):
        v = params.get(key, getattr(Thresholds, name))
        _require(
            _is_number(v) and 0 <= v <= 255,
            f"config.threshold_params.{key}",
            "must be a number from 0 to 255",
        )
        values[name] = float(v)
    return Thresholds(**values)


def _parse_alignment(data: dict, config: dict | None, assets: dict[str, bytes] | None) -> Alignment | None:
    """OMRChecker preprocessors, run instead of our ArUco alignment. As in OMRChecker, an empty
    list means the whole image, resized, is the page; only a template that has neither
    preProcessors nor markers has its page outline looked for."""
    _require(config is None or isinstance(config, dict), "config", "must be a JSON object")
    steps = parse_steps(data.get("preProcessors"), config, assets)
    if not steps and ("markers" in data or "preProcessors" not in data):
        return None
    _require(
        "markers" not in data,
        "preProcessors",
        "a template with ArUco markers is aligned and read on its own: drop preProcessors or markers",
    )
    return Alignment(steps, processing_size(config))
