"""What a batch's file holds: its pages, listed safely without extracting anything, and
each page loaded on demand as an image. Runs in worker threads, never on the event loop."""

from __future__ import annotations

import dataclasses
import io
import posixpath
import stat
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".pdf"}
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}


@dataclasses.dataclass(frozen=True)
class Limits:
    max_entries: int = 50_000
    max_entry_bytes: int = 512 * 1024 * 1024
    max_total_bytes: int = 64 * 1024**3
    max_ratio: float = 200.0          # uncompressed / compressed, per entry
    max_pixels: int = 120_000_000     # a decoded page larger than this is a decompression bomb
    max_pdf_pages: int = 2_000


class PageError(Exception):
    """A page that cannot be read; the sheet fails with this reason."""


@dataclasses.dataclass
class Listing:
    pages: list[tuple[str, int]]           # (source, page number from 1)
    skipped: list[dict[str, str]]          # {"entry", "reason"}
    error: str | None = None               # the whole file is unreadable


def list_pages(path: Path, filename: str, limits: Limits = Limits()) -> Listing:
    if zipfile.is_zipfile(path):
        return _list_zip(path, limits)
    name = filename or path.name
    if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return Listing([], [], f"{name} is neither a ZIP file nor an image (JPEG, PNG, TIFF or PDF)")
    try:
        with open(path, "rb") as f:
            return Listing([(name, n) for n in range(1, _page_count(f, name, limits) + 1)], [])
    except PageError as exc:  # the whole upload is this one file: the batch fails with the reason
        return Listing([], [], str(exc))


def _list_zip(path: Path, limits: Limits) -> Listing:
    listing = Listing([], [])
    total = 0
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            for info in entries:
                reason = _skip_reason(info, limits)
                if reason == "ignored":
                    continue
                if reason is None and info.filename in seen:  # a sheet is known by its entry's name
                    reason = "a second entry of the same name (only the first is read)"
                seen.add(info.filename)
                if reason is None and len(listing.pages) >= limits.max_entries:
                    reason = f"more than {limits.max_entries} pages in one batch"
                if reason is None and total + info.file_size > limits.max_total_bytes:
                    reason = f"the batch passes {limits.max_total_bytes} uncompressed bytes"
                if reason is not None:
                    listing.skipped.append({"entry": info.filename, "reason": reason})
                    continue
                total += info.file_size
                try:
                    with archive.open(info) as f:
                        count = _page_count(f, info.filename, limits)
                except PageError:
                    count = 1  # listed anyway: reading it fails the sheet with the reason
                except (zipfile.BadZipFile, OSError, EOFError) as exc:
                    listing.skipped.append({"entry": info.filename, "reason": f"unreadable: {exc}"})
                    continue
                listing.pages.extend((info.filename, n) for n in range(1, count + 1))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return Listing([], [], f"not a readable ZIP file: {exc}")
    return listing


def _skip_reason(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    name = info.filename
    parts = PurePosixPath(name).parts
    if info.is_dir():
        return "ignored"
    if name.startswith("/") or "\\" in name or ".." in parts or posixpath.normpath(name).startswith(".."):
        return "unsafe path: outside the archive's folder"
    if parts and parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts) \
            or parts[-1].lower() in IGNORED_NAMES:
        return "ignored"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return "not a sheet image (JPEG, PNG, TIFF or PDF)"
    if info.file_size > limits.max_entry_bytes:
        return f"larger than {limits.max_entry_bytes} bytes"
    if info.compress_size and info.file_size > 1024 * 1024 and info.file_size / info.compress_size > limits.max_ratio:
        return f"compression ratio {info.file_size / info.compress_size:.0f}:1 is above {limits.max_ratio:.0f}:1"
    return None


def _page_count(f, name: str, limits: Limits) -> int:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in (".jpg", ".jpeg", ".png"):
        return 1
    data = _bounded_read(f, limits.max_entry_bytes)
    try:
        if suffix == ".pdf":
            import pypdfium2

            pdf = pypdfium2.PdfDocument(data)
            try:
                count = len(pdf)
            finally:
                pdf.close()
            _check_pdf_pages(count, limits)
            return max(count, 1)
        with Image.open(io.BytesIO(data)) as image:
            return max(getattr(image, "n_frames", 1), 1)
    except PageError:
        raise
    except Exception as exc:  # a corrupt PDF or TIFF: one sheet that fails with the reason
        raise PageError(f"unreadable {suffix[1:].upper()}: {exc}") from None


def _check_pdf_pages(count: int, limits: Limits) -> None:
    if count > limits.max_pdf_pages:
        raise PageError(f"PDF of {count} pages is over the limit of {limits.max_pdf_pages}")


def _bounded_read(f, limit: int) -> bytes:
    data = f.read(limit + 1)
    if len(data) > limit:
        raise PageError(f"larger than {limit} bytes")
    return data


def load_page(path: Path, source: str, page: int, width: int, limits: Limits = Limits()) -> np.ndarray:
    """The page as a BGR or grayscale image; PDF pages are rendered as wide as `width`
    pixels (the template's canonical page), at least 150 dpi."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive, archive.open(source) as f:
                data = _bounded_read(f, limits.max_entry_bytes)
        else:
            with open(path, "rb") as f:
                data = _bounded_read(f, limits.max_entry_bytes)
    except (KeyError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PageError(f"cannot read {source}: {exc}") from None
    return decode_page(data, source, page, width, limits)


def decode_page(data: bytes, source: str, page: int, width: int, limits: Limits = Limits()) -> np.ndarray:
    suffix = PurePosixPath(source).suffix.lower()
    try:
        if suffix == ".pdf":
            return _render_pdf_page(data, page, width, limits)
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > limits.max_pixels:
                raise PageError(f"image of {image.width}x{image.height} pixels is over the limit")
            image.seek(page - 1)
            image.load()
            array = np.asarray(image.convert("L"))
    except PageError:
        raise
    except Image.DecompressionBombError as exc:
        raise PageError(f"image {source} is over the limit of {limits.max_pixels} pixels ({exc})") from None
    except Exception as exc:
        raise PageError(f"unreadable image {source}: {exc}") from None
    return array


def _render_pdf_page(data: bytes, page: int, width: int, limits: Limits) -> np.ndarray:
    import pypdfium2

    pdf = pypdfium2.PdfDocument(data)
    try:
        _check_pdf_pages(len(pdf), limits)
        pdf_page = pdf[page - 1]
        points = pdf_page.get_width()  # 1/72 inch
        scale = max(width / points, 150 / 72)
        if points * scale * pdf_page.get_height() * scale > limits.max_pixels:
            raise PageError("PDF page too large to render")
        bitmap = pdf_page.render(scale=scale, grayscale=True)
        return np.array(bitmap.to_numpy())
    finally:
        pdf.close()
