"""OMRChecker's `preProcessors` as alignment steps.

As in OMRChecker, the steps run on the sheet resized to the config's processing dimensions,
so a template tuned for OMRChecker lands its boxes where OMRChecker lands them. Unlike
OMRChecker, each geometric step only reports the map it applied: the maps are chained and
the original, full-resolution image is warped onto the page once, so bubbles are read from
sharp pixels rather than from a small image scaled back up. Blurs and `Levels` only steer the
steps: the bubbles are read from the scan's own grey levels, since the reader learns what dark
is from each sheet's marks, and a hard tone curve (sample6's black point at 70 %) turns the
letters and digits printed inside bubbles as black as a mark.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .errors import SheetError, TemplateError

PROCESSING = (666, 820)  # OMRChecker's default processing width and height
MIN_PAGE_AREA = 80000  # px at processing size: smaller edge outlines are not the page
PAGE_MIN_SHARE = 0.1  # a light page region must cover this share of the image
SAME_CORNER = 0.005  # page corners this close (share of the image side) are one guess
MAX_COSINE = 0.35  # page corners must be roughly square
MIN_MARKER_SPAN = 0.25  # CropOnMarkers: the markers frame at least this share of each side
MAX_ASSET_SIDE = 10000
FEATURE_MIN_INLIERS = 10  # fewer agreeing feature matches: the reference was not found
FEATURE_TRIES = 5000  # RANSAC draws: few of a form's matches agree, so look long for them
FEATURE_RATIO = 0.8  # a feature's best match must be this much closer than its second
FEATURE_REVIEW_ERROR = 3.0  # px (processing size) of mean feature misfit that needs review

Matrix = np.ndarray  # 3x3 map from a step's input pixels to its output pixels


@dataclass(frozen=True)
class Outcome:
    image: np.ndarray
    matrix: Matrix | None = None  # None: the step changed pixels, not geometry
    review: str | None = None  # a doubt about the alignment, shown to the reviewer
    second: Callable[[], Outcome | None] | None = None  # a second guess, made only when the template
    # does not fit the first


class Step:
    """One preprocessor."""

    def __call__(self, image: np.ndarray) -> Outcome:
        raise NotImplementedError


# --- pixel filters ---------------------------------------------------------------------------


class Levels(Step):
    def __init__(self, low: float, high: float, gamma: float):
        x = np.arange(256, dtype=np.float64)
        lo, hi = int(255 * low), int(255 * high)
        scaled = np.clip((x - lo) / max(hi - lo, 1), 0, 1) ** (1 / gamma)
        self.lut = np.where(x <= lo, 0, np.where(x >= hi, 255, scaled * 255)).astype(np.uint8)

    def __call__(self, image: np.ndarray) -> Outcome:
        return Outcome(cv2.LUT(image, self.lut))


class GaussianBlur(Step):
    def __init__(self, size: tuple[int, int], sigma: float):
        self.size, self.sigma = size, sigma

    def __call__(self, image: np.ndarray) -> Outcome:
        return Outcome(cv2.GaussianBlur(image, self.size, self.sigma))


class MedianBlur(Step):
    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: np.ndarray) -> Outcome:
        return Outcome(cv2.medianBlur(image, self.size))


# --- geometry --------------------------------------------------------------------------------


def order_corners(points: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left (by x+y and y-x)."""
    s, d = points.sum(1), points[:, 1] - points[:, 0]
    return points[[s.argmin(), d.argmin(), s.argmax(), d.argmax()]].astype(np.float32)


def four_point_warp(image: np.ndarray, points: np.ndarray) -> Outcome:
    """The quadrilateral straightened to a rectangle as long as its longer sides (OMRChecker's
    four_point_transform: templates are measured on that rectangle)."""
    tl, tr, br, bl = corners = order_corners(points)
    width = max(int(np.linalg.norm(br - bl)), int(np.linalg.norm(tr - tl)), 2)
    height = max(int(np.linalg.norm(tr - br)), int(np.linalg.norm(tl - bl)), 2)
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    return Outcome(cv2.warpPerspective(image, matrix, (width, height)), matrix)


def _normalize(image: np.ndarray) -> np.ndarray:
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)


def _max_cosine(quad: np.ndarray) -> float:
    q = quad.reshape(4, 2).astype(np.float64)
    cosines = []
    for i in range(4):
        a, b = q[i - 1] - q[i], q[(i + 1) % 4] - q[i]
        cosines.append(abs(a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-9))
    return max(cosines)


def page_outline(image: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray | None:
    """Corners (tl, tr, br, bl) of the largest light, roughly rectangular shape (a page on a
    darker background), or None."""
    blurred = cv2.GaussianBlur(image, (5, 5), 0)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((10, 10), np.uint8) if kernel is None else kernel)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return _largest_quad(contours, PAGE_MIN_SHARE * image.size)


def _largest_quad(contours, min_area: float) -> np.ndarray | None:
    """The largest of the five largest contours whose hull simplifies to a roughly
    rectangular quadrilateral of at least `min_area`, as ordered corners."""
    hulls = sorted((cv2.convexHull(c) for c in contours), key=cv2.contourArea, reverse=True)[:5]
    for hull in hulls:
        if cv2.contourArea(hull) < min_area:
            break
        quad = cv2.approxPolyDP(hull, 0.025 * cv2.arcLength(hull, True), True)
        if len(quad) == 4 and _max_cosine(quad) < MAX_COSINE:
            return order_corners(quad.reshape(4, 2))
    return None


class CropPage(Step):
    """The page's outline: OMRChecker's edge contour first (so its templates land where they
    did); the outline of the light region, which survives blur, noise, small photos and a shadow
    edge, where there is none, and else as the second guess, made when the template does not
    fit the first."""

    def __init__(self, kernel: tuple[int, int]):
        self.kernel = cv2.getStructuringElement(cv2.MORPH_RECT, kernel)

    def __call__(self, image: np.ndarray) -> Outcome:
        light = _normalize(cv2.threshold(_normalize(image), 200, 255, cv2.THRESH_TRUNC)[1])
        edges = cv2.Canny(cv2.morphologyEx(light, cv2.MORPH_CLOSE, self.kernel), 185, 55)
        contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        quad = _largest_quad(contours, MIN_PAGE_AREA)
        if quad is None:
            return self._light_region(image, None) or _no_page()
        first = four_point_warp(image, quad)
        return Outcome(first.image, first.matrix, first.review, lambda: self._light_region(image, quad))

    def _light_region(self, image: np.ndarray, edges: np.ndarray | None) -> Outcome | None:
        """The page as the outline of its light region, unless that is the edges' outline again."""
        light = page_outline(image, self.kernel)
        if light is None or (
            edges is not None and np.abs(light - edges).max() < SAME_CORNER * max(image.shape)
        ):
            return None
        return four_point_warp(image, light)


def _no_page() -> Outcome:
    raise SheetError(
        "CropPage: the page's outline was not found (the sheet should lie on a "
        "darker background with its four corners in the picture)"
    )


class CropOnMarkers(Step):
    """Four copies of the template's marker image, one per corner region, found by template
    matching over a range of scales; the page is the quadrilateral of their centres."""

    def __init__(
        self,
        marker: np.ndarray,
        width: float | None,
        min_match: float,
        max_variation: float,
        scales: range,
        erode_subtract: bool,
    ):
        if width:
            marker = cv2.resize(
                marker, (max(int(width), 4), max(int(marker.shape[0] * width / marker.shape[1]), 4))
            )
        marker = _normalize(cv2.GaussianBlur(marker, (5, 5), 0))
        if erode_subtract:
            marker = marker - cv2.erode(marker, np.ones((5, 5)), iterations=5)
        self.min_match, self.max_variation = min_match, max_variation
        h, w = marker.shape
        heights = [max(int(h * s / 100), 2) for s in scales]  # every scale resized once, not per sheet
        self.markers = [cv2.resize(marker, (max(int(w * height / h), 2), height)) for height in heights]

    def __call__(self, image: np.ndarray) -> Outcome:
        """Unlike OMRChecker, each corner region picks its own scale: on a photo taken at an
        angle the near markers are larger than the far ones."""
        prepared = _normalize(image)
        h, w = prepared.shape
        mid_h, mid_w = h // 3, w // 2
        regions = (
            ((0, 0), prepared[:mid_h, :mid_w]),
            ((mid_w, 0), prepared[:mid_h, mid_w:]),
            ((0, mid_h), prepared[mid_h:, :mid_w]),
            ((mid_w, mid_h), prepared[mid_h:, mid_w:]),
        )
        found = [self._best(region) for _, region in regions]
        best_score = max(score for score, _, _ in found)
        centres = []
        for k, ((ox, oy), (score, (x, y), (mw, mh))) in enumerate(zip((o for o, _ in regions), found), 1):
            if score < self.min_match or best_score - score >= self.max_variation:
                raise SheetError(
                    f"CropOnMarkers: no marker found in corner region {k} (match {max(score, 0):.2f}, "
                    f"need {self.min_match})"
                )
            centres.append((ox + x + mw / 2, oy + y + mh / 2))
        quad = order_corners(np.array(centres, np.float32))
        sides = np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1) / [w, h, w, h]
        if _max_cosine(quad) >= MAX_COSINE or sides.min() < MIN_MARKER_SPAN:
            raise SheetError(
                "CropOnMarkers: the four best matches do not frame the page (is the marker "
                "printed in each corner, and is the whole sheet in the picture?)"
            )
        return four_point_warp(image, quad)

    def _best(self, region: np.ndarray) -> tuple[float, tuple[int, int], tuple[int, int]]:
        """(match, top-left, marker size) of the best scale of the marker in one region."""
        best = (-1.0, (0, 0), (0, 0))
        for marker in self.markers:
            if marker.shape[0] > region.shape[0] or marker.shape[1] > region.shape[1]:
                continue
            _, score, _, at = cv2.minMaxLoc(cv2.matchTemplate(region, marker, cv2.TM_CCOEFF_NORMED))
            if score > best[0]:
                best = (float(score), (at[0], at[1]), (marker.shape[1], marker.shape[0]))
        return best


class FeatureBasedAlignment(Step):
    """ORB features of the sheet matched to those of a reference image of the blank sheet."""

    def __init__(self, reference: np.ndarray, processing: tuple[int, int], options: dict[str, Any]):
        self.size = processing
        self.orb = cv2.ORB.create(int(options.get("maxFeatures", 500)))
        self.keep = float(options.get("goodMatchPercent", 0.15))
        self.affine = bool(options.get("2d", False))
        self.points, self.descriptors = self.orb.detectAndCompute(cv2.resize(reference, processing), None)
        if self.descriptors is None:
            raise ValueError("the reference image has no features to match (is it blank?)")

    def __call__(self, image: np.ndarray) -> Outcome:
        points, descriptors = self.orb.detectAndCompute(_normalize(image), None)
        if descriptors is None:
            raise SheetError("FeatureBasedAlignment: the sheet has no features to match")
        matches = self._distinct(descriptors)
        src = np.array([points[m.queryIdx].pt for m in matches], np.float32)
        dst = np.array([self.points[m.trainIdx].pt for m in matches], np.float32)
        matrix: np.ndarray | None = None  # OpenCV answers None where no fit is found
        inliers: np.ndarray | None = None
        if self.affine:
            affine, inliers = cv2.estimateAffine2D(
                src, dst, ransacReprojThreshold=3.0, maxIters=FEATURE_TRIES, confidence=0.999
            )
            matrix = None if affine is None else np.vstack([affine, [0, 0, 1]])
        elif len(src) >= 4:
            matrix, inliers = cv2.findHomography(
                src, dst, cv2.RANSAC, 5.0, maxIters=FEATURE_TRIES, confidence=0.999
            )
        if matrix is None or inliers is None or int(inliers.sum()) < FEATURE_MIN_INLIERS:
            raise SheetError("FeatureBasedAlignment: the sheet does not match the reference image")
        keep = inliers.ravel().astype(bool)
        mapped = cv2.perspectiveTransform(src[keep].reshape(-1, 1, 2), matrix).reshape(-1, 2)
        misfit = float(np.linalg.norm(mapped - dst[keep], axis=1).mean())
        review = f"feature alignment misfit {misfit:.1f} px" if misfit > FEATURE_REVIEW_ERROR else None
        return Outcome(cv2.warpPerspective(image, matrix, self.size), matrix, review)

    def _distinct(self, descriptors: np.ndarray) -> list:
        """The best matches, as OMRChecker keeps them (its goodMatchPercent of all, by distance),
        but only among features that match one place clearly better than any other: a form is
        full of identical bubbles, whose features match every bubble alike and mislead the fit."""
        pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(descriptors, self.descriptors, k=2)
        distinct = [p[0] for p in pairs if len(p) == 2 and p[0].distance < FEATURE_RATIO * p[1].distance]
        ranked = sorted(distinct, key=lambda m: m.distance)
        return ranked[: max(int(len(pairs) * self.keep), FEATURE_MIN_INLIERS * 3)]


# --- parsing ---------------------------------------------------------------------------------


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise TemplateError(key, message)


def _number(options: dict, key: str, path: str, default: float, low: float, high: float) -> float:
    v = options.get(key, default)
    _require(
        isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high,
        f"{path}.{key}",
        f"must be a number from {low} to {high}",
    )
    return float(v)


def _int_pair(options: dict, key: str, path: str, default: tuple[int, int]) -> tuple[int, int]:
    v = options.get(key, default)
    ok = (
        isinstance(v, (list, tuple))
        and len(v) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 99 for n in v)
    )
    _require(ok, f"{path}.{key}", "must be a pair of whole numbers from 1 to 99")
    return int(v[0]), int(v[1])


def _image(assets: dict[str, bytes], name: Any, path: str) -> np.ndarray:
    """An asset image, its size checked from its header before it is decoded."""
    _require(isinstance(name, str) and bool(name), path, "must name an image file")
    _require(
        name in assets,
        path,
        f"the file {name!r} was not sent with the task (send it as an "
        f"'asset' file field of a multipart POST /api/tasks)",
    )
    try:
        with Image.open(io.BytesIO(assets[name])) as header:
            size, kind = header.size, header.format
    except Image.DecompressionBombError:
        raise TemplateError(path, f"the image {name!r} must be 8 to {MAX_ASSET_SIDE} pixels a side") from None
    except Exception:  # Pillow raises many kinds for a file that is not an image
        size, kind = (0, 0), None
    _require(kind in ("PNG", "JPEG"), path, f"the file {name!r} is not a PNG or JPEG image")
    _require(
        max(size) <= MAX_ASSET_SIDE and min(size) >= 8,
        path,
        f"the image {name!r} must be 8 to {MAX_ASSET_SIDE} pixels a side",
    )
    image = cv2.imdecode(np.frombuffer(assets[name], np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise TemplateError(path, f"the image {name!r} could not be decoded")
    return image


def _levels(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    low = _number(o, "low", path, 0, 0, 1)
    high = _number(o, "high", path, 1, 0, 1)
    _require(low < high, f"{path}.high", "must be above low")
    return Levels(low, high, _number(o, "gamma", path, 1.0, 0.01, 100))


def _gaussian(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    size = _int_pair(o, "kSize", path, (3, 3))
    _require(all(n % 2 for n in size), f"{path}.kSize", "must be odd numbers")
    return GaussianBlur(size, _number(o, "sigmaX", path, 0, 0, 100))


def _median(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    size = _number(o, "kSize", path, 5, 1, 99)
    _require(size == int(size) and int(size) % 2 == 1, f"{path}.kSize", "must be an odd whole number")
    return MedianBlur(int(size))


def _crop_page(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    return CropPage(_int_pair(o, "morphKernel", path, (10, 10)))


def _crop_on_markers(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    """OMRChecker's options, under either of the spellings its versions used."""

    def option(names: tuple[str, ...], default: float, low: float, high: float) -> float:
        name = next((n for n in names if n in o), names[0])
        return _number(o, name, path, default, low, high)

    ratio = option(("sheetToMarkerWidthRatio",), 0, 0, 1000)
    rescale = o.get("marker_rescale_range", [35, 100])
    ok = (
        isinstance(rescale, (list, tuple))
        and len(rescale) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in rescale)
        and 0 < rescale[0] < rescale[1] <= 1000
    )
    _require(ok, f"{path}.marker_rescale_range", "must be two whole percentages, low < high")
    steps = int(option(("marker_rescale_steps",), 10, 1, 100))
    marker = _image(assets, o.get("relativePath", "omr_marker.jpg"), f"{path}.relativePath")
    return CropOnMarkers(
        marker,
        processing[0] / ratio if ratio else None,
        option(("min_matching_threshold", "minMatchingThreshold"), 0.3, 0, 1),
        option(("max_matching_variation", "maxMatchingVariation"), 0.41, 0, 1),
        range(rescale[1], rescale[0], -max((rescale[1] - rescale[0]) // steps, 1)),
        bool(o.get("apply_erode_subtract", True)),
    )


def _feature_based(o: dict, path: str, assets: dict, processing: tuple[int, int]) -> Step:
    reference = _image(assets, o.get("reference"), f"{path}.reference")
    _number(o, "maxFeatures", path, 500, 10, 100000)
    _number(o, "goodMatchPercent", path, 0.15, 0.01, 1)
    try:
        return FeatureBasedAlignment(reference, processing, o)
    except ValueError as exc:
        raise TemplateError(f"{path}.reference", str(exc)) from None


PARSERS: dict[str, Callable[[dict, str, dict, tuple[int, int]], Step]] = {
    "Levels": _levels,
    "GaussianBlur": _gaussian,
    "MedianBlur": _median,
    "CropPage": _crop_page,
    "CropOnMarkers": _crop_on_markers,
    "FeatureBasedAlignment": _feature_based,
}


def processing_size(config: dict | None) -> tuple[int, int]:
    """The config's processing width and height (OMRChecker's defaults when absent)."""
    dims = (config or {}).get("dimensions") or {}
    _require(isinstance(dims, dict), "config.dimensions", "must be an object")
    size = []
    for key, default in zip(("processing_width", "processing_height"), PROCESSING):
        v = dims.get(key, default)
        _require(
            isinstance(v, int) and not isinstance(v, bool) and 64 <= v <= MAX_ASSET_SIDE,
            f"config.dimensions.{key}",
            f"must be a whole number from 64 to {MAX_ASSET_SIDE}",
        )
        size.append(v)
    return size[0], size[1]


def parse_steps(raw: Any, config: dict | None, assets: dict[str, bytes] | None) -> tuple[Step, ...]:
    """The template's preProcessors as steps; TemplateError names the bad key."""
    if raw is None:
        return ()
    _require(isinstance(raw, list), "preProcessors", "must be a list")
    processing = processing_size(config)
    steps = []
    for i, item in enumerate(raw):
        path = f"preProcessors[{i}]"
        _require(isinstance(item, dict), path, "must be an object with name and options")
        name, options = item.get("name"), item.get("options", {})
        _require(name in PARSERS, f"{path}.name", f"{name!r} is not one of {', '.join(PARSERS)}")
        _require(isinstance(options, dict), f"{path}.options", "must be an object")
        steps.append(PARSERS[name](options, f"{path}.options", assets or {}, processing))
    return tuple(steps)


@dataclass(frozen=True)
class Alignment:
    """The steps of one template and the processing size they run at."""

    steps: tuple[Step, ...]
    processing: tuple[int, int]

    def align(self, gray: np.ndarray, page: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        """The page (pageDimensions) warped once from `gray`, and review reasons."""
        return next(self.candidates(gray, page))

    def candidates(self, gray: np.ndarray, page: tuple[int, int]) -> Iterator[tuple[np.ndarray, list[str]]]:
        """The page as the steps find it; then, lazily, as each step's second guess finds it."""
        (pw, ph), (h, w) = self.processing, gray.shape
        work = cv2.resize(gray, (pw, ph), interpolation=cv2.INTER_AREA)
        yield from self._run(gray, page, work, _scale(w, h, pw, ph), 0, [])

    def _run(
        self,
        gray: np.ndarray,
        page: tuple[int, int],
        work: np.ndarray,
        chain: Matrix,
        i: int,
        reasons: list[str],
    ) -> Iterator[tuple[np.ndarray, list[str]]]:
        if i == len(self.steps):
            yield self._warp(gray, page, work, chain), reasons
            return
        out: Outcome | None = self.steps[i](work)
        while out is not None:
            yield from self._run(
                gray,
                page,
                out.image,
                chain if out.matrix is None else out.matrix @ chain,
                i + 1,
                reasons + ([out.review] if out.review else []),
            )
            out = out.second() if out.second else None

    def _warp(self, gray: np.ndarray, page: tuple[int, int], work: np.ndarray, chain: Matrix) -> np.ndarray:
        h, w = gray.shape
        chain = _scale(work.shape[1], work.shape[0], *page) @ chain
        factor = int(min(w / page[0], h / page[1]))  # pre-shrink: warping then needs no anti-aliasing
        source = gray
        if factor >= 2:
            source = cv2.resize(gray, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
            chain = chain @ np.linalg.inv(_scale(w, h, source.shape[1], source.shape[0]))
        return cv2.warpPerspective(source, chain, page, flags=cv2.INTER_LINEAR, borderValue=255)


def _scale(w: int, h: int, to_w: int, to_h: int) -> Matrix:
    """The resize map from a w x h image to to_w x to_h (pixel-centre convention, as cv2.resize)."""
    sx, sy = to_w / w, to_h / h
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)
