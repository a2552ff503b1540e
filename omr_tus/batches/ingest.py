"""What a batch's file holds: its pages, listed safely without extracting anything, and
each page loaded on demand as an image. Runs in worker threads, never on the event loop."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import posixpath
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from . import pdf_pages

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".pdf"}
MULTI_PAGE = {".tif", ".tiff", ".pdf"}
# What PIL may take a file for. A multi-page name is walked frame by frame, so only a TIFF (never
# a GIF's frames); a single image has only its first frame decoded, and scans come mislabelled
# (OMRChecker's own samples hold a WebP named .jpg), so the usual scan and photo formats.
TIFF_FORMATS = ["TIFF"]
SINGLE_FORMATS = ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"]
BAND_BLOCKS = 128  # rows of the reduced page converted at a time
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
READABLE_COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
ENCRYPTED_FLAG = 0x1  # general purpose bit 0 of a ZIP entry
MAX_NAME = 1024  # characters of a sheet's source (the column's size): a longer entry name is skipped
DIRECTORY_BYTES_PER_ENTRY = (
    256  # room for paths of ~200 characters; bounds a directory that understates its count
)


@dataclasses.dataclass(frozen=True)
class Limits:
    max_entries: int = 50_000  # sheets (pages) in one batch
    max_archive_entries: int = (
        100_000  # entries in a ZIP's directory, sheets or not, checked before parsing it
    )
    max_entry_bytes: int = 512 * 1024 * 1024
    max_total_bytes: int = 64 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, per entry
    max_pixels: int = 120_000_000  # any one decoded page (every TIFF frame): more is a decompression bomb
    max_decoded_bytes: int = 160 * 1024**2  # one page as decoded (an A4 600-dpi colour scan: 133 MiB)
    max_file_pages: int = 2_000  # pages of one PDF, frames of one TIFF
    max_skipped_listed: int = 1_000  # skipped entries named in the batch; the rest are only counted
    max_pdf_seconds: float = 10.0  # to open a PDF or render one page (in a child process, killed after);
    # a claim's 4 sheets, each opened and rendered, stay within a 120 s lease
    max_frames_walked: int = (
        100_000  # TIFF frames and PDF pages counted while listing one batch, over all files
    )


class PageError(Exception):
    """A page that cannot be read; the sheet fails with this reason."""


class BudgetSpent(Exception):
    """Listing the batch has counted its max_frames_walked: the rest of its multi-page files are skipped."""


@dataclasses.dataclass
class WalkBudget:
    """Frames and pages a batch's listing may still count: 200 TIFFs of 2,001 frames each are
    each over the per-file limit, yet counting them all cost 54 s."""

    left: int


@dataclasses.dataclass
class Listing:
    pages: list[tuple[str, int]]  # (source, page number from 1)
    skipped: list[dict[str, str]]  # {"entry", "reason"}, the first max_skipped_listed of them
    error: str | None = None  # the whole file is unreadable
    skipped_count: int = 0  # every skipped entry, named or not
    skip_limit: int = Limits.max_skipped_listed

    def skip(self, entry: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < self.skip_limit:
            self.skipped.append({"entry": entry[:MAX_NAME], "reason": reason})


def list_pages(path: Path, filename: str, limits: Limits = Limits()) -> Listing:
    """The file's pages; a file that can never be read gives a Listing with its error (the
    batch fails with it) rather than an exception that would have it claimed again."""
    try:
        if zipfile.is_zipfile(path):
            return _list_zip(path, limits)
        name = filename or path.name
        if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
            return Listing([], [], f"{name} is neither a ZIP file nor an image (JPEG, PNG, TIFF or PDF)")
        with open(path, "rb") as f:
            return Listing([(name, n) for n in range(1, _page_count(f, name, limits) + 1)], [])
    except PageError as exc:  # the whole upload is this one file: the batch fails with the reason
        return Listing([], [], str(exc))
    except zipfile.BadZipFile as exc:
        return Listing([], [], f"not a readable ZIP file: {exc}")
    except Exception as exc:  # whatever else the bytes provoke: failing beats a claim retried every lease
        return Listing([], [], f"{filename or path.name} cannot be read: {type(exc).__name__}: {exc}")


def _list_zip(path: Path, limits: Limits) -> Listing:
    listing = Listing([], [], skip_limit=limits.max_skipped_listed)
    total = 0
    seen: set[str] = set()
    budget = WalkBudget(limits.max_frames_walked)
    _check_directory(path, limits)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
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
            if reason is None:
                try:
                    with archive.open(info) as f:
                        count = _page_count(f, info.filename, limits, budget)
                except PageError:
                    count = 1  # listed anyway: reading it fails the sheet with the reason
                except BudgetSpent:
                    reason = f"the batch's listing counted its limit of {limits.max_frames_walked} frames and pages"
                except Exception as exc:  # a corrupt stream: this entry is skipped, the rest are read
                    reason = f"unreadable: {exc}"
                else:
                    if len(listing.pages) + count > limits.max_entries:
                        reason = f"more than {limits.max_entries} pages in one batch"
            if reason is not None:
                listing.skip(info.filename, reason)
                continue
            total += info.file_size
            listing.pages.extend((info.filename, n) for n in range(1, count + 1))
    return listing


def _check_directory(path: Path, limits: Limits) -> None:
    """Refuses a ZIP whose end record declares more entries, or a larger central directory,
    than the limits allow, before zipfile parses (and holds) the whole directory: zipfile
    reads the directory by its size, so a record that understates the count is caught too.
    Like zipfile, a ZIP64 record is read whenever its locator is there, whatever the classic
    record says, and the larger of the two counts."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - (22 + 0xFFFF + 20)))  # end record, its longest comment, the ZIP64 locator
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < 22:
            return  # zipfile reports what is wrong with it
        count, directory = struct.unpack_from("<HI", tail, at + 10)
        if at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
            (record,) = struct.unpack_from("<Q", tail, at - 12)
            f.seek(record)
            zip64 = f.read(56)
            if zip64[:4] == b"PK\x06\x06" and len(zip64) == 56:
                count64, directory64 = struct.unpack_from("<QQ", zip64, 32)
                count, directory = max(count, count64), max(directory, directory64)
    if count > limits.max_archive_entries:
        raise PageError(f"a ZIP of {count} entries is over the limit of {limits.max_archive_entries}")
    if directory > limits.max_archive_entries * DIRECTORY_BYTES_PER_ENTRY:
        raise PageError(
            f"a ZIP directory of {directory} bytes is over the limit of "
            f"{limits.max_archive_entries * DIRECTORY_BYTES_PER_ENTRY}"
        )


def _skip_reason(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    name = info.filename
    parts = PurePosixPath(name).parts
    if info.is_dir():
        return "ignored"
    if len(name) > MAX_NAME:
        return f"a name longer than {MAX_NAME} characters"
    if name.startswith("/") or "\\" in name or ".." in parts or posixpath.normpath(name).startswith(".."):
        return "unsafe path: outside the archive's folder"
    if (
        parts
        and parts[0] == "__MACOSX"
        or any(p.startswith(".") for p in parts)
        or parts[-1].lower() in IGNORED_NAMES
    ):
        return "ignored"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if PurePosixPath(name).suffix.lower() not in IMAGE_EXTENSIONS:
        return "not a sheet image (JPEG, PNG, TIFF or PDF)"
    if info.flag_bits & ENCRYPTED_FLAG:
        return "encrypted (password-protected entries cannot be read)"
    if info.compress_type not in READABLE_COMPRESSIONS:
        return f"compressed with method {info.compress_type}, which cannot be read (use deflate or none)"
    if info.file_size > limits.max_entry_bytes:
        return f"larger than {limits.max_entry_bytes} bytes"
    if (
        info.compress_size
        and info.file_size > 1024 * 1024
        and info.file_size / info.compress_size > limits.max_ratio
    ):
        return (
            f"compression ratio {info.file_size / info.compress_size:.0f}:1 is above {limits.max_ratio:.0f}:1"
        )
    return None


def _page_count(f, name: str, limits: Limits, budget: WalkBudget | None = None) -> int:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in MULTI_PAGE:
        return 1
    if budget is not None and budget.left <= 0:
        raise BudgetSpent
    with _open_document(_bounded_read(f, limits.max_entry_bytes), name, limits, budget) as document:
        return document.pages


class _Document:
    """An open PDF or TIFF whose page count was checked against the limit when it was opened:
    pdfium keeps the page tree, PIL a TIFF's frame offsets, so page n costs no walk from page 1.
    With a budget (listing a batch), what it counts is taken from it, and no more than it has left."""

    def __init__(self, source, name: str, limits: Limits, budget: WalkBudget | None = None):
        self.name, self.limits = name, limits
        self.pdf = self.image = None
        suffix = PurePosixPath(name).suffix.lower()
        cap = limits.max_file_pages if budget is None else min(limits.max_file_pages, budget.left)
        try:
            if suffix == ".pdf":
                self.pdf = pdf_pages.acquire()
                self.pages = self.pdf.open(source, limits.max_pdf_seconds)
            else:
                self.image = Image.open(source, formats=TIFF_FORMATS)
                self.pages = _frame_count(self.image, cap)
        except Exception as exc:  # a corrupt PDF or TIFF: one sheet that fails with the reason
            self.close()
            raise PageError(f"unreadable {suffix[1:].upper()} {name}: {exc}") from None
        if budget is not None:
            budget.left -= min(self.pages, cap + 1)
            if self.pages > cap and cap < limits.max_file_pages:
                self.close()
                raise BudgetSpent
        if self.pages > limits.max_file_pages:
            self.close()
            size = f"{self.pages} pages" if suffix == ".pdf" else f"more than {limits.max_file_pages} frames"
            raise PageError(f"{suffix[1:].upper()} of {size} is over the limit of {limits.max_file_pages}")
        self.pages = max(self.pages, 1)

    def page(self, number: int, width: int) -> np.ndarray:
        if not 1 <= number <= self.pages:
            raise PageError(f"{self.name} has no page {number}")
        if self.pdf is not None:
            try:
                return self.pdf.render(number - 1, width, self.limits.max_pixels, self.limits.max_pdf_seconds)
            except pdf_pages.PdfError as exc:
                raise PageError(f"{self.name}: {exc}") from None
        assert self.image is not None, "a document is read before it is closed"
        self.image.seek(number - 1)
        return _grey(self.image, self.name, width, self.limits)

    def close(self) -> None:
        if self.pdf is not None:
            pdf_pages.release(self.pdf)
        if self.image is not None:
            self.image.close()
        self.pdf = self.image = None

    def __enter__(self) -> _Document:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_document(data: bytes, name: str, limits: Limits, budget: WalkBudget | None = None) -> _Document:
    return _Document(data if name.lower().endswith(".pdf") else io.BytesIO(data), name, limits, budget)


def _frame_count(image: Image.Image, limit: int) -> int:
    """Frames counted one by one, up to limit + 1: a 60,000-frame TIFF is never walked to its
    end (as PIL's n_frames would)."""
    count = 0
    try:
        while count <= limit:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    return count


def _bounded_read(f, limit: int) -> bytes:
    data = f.read(limit + 1)
    if len(data) > limit:
        raise PageError(f"larger than {limit} bytes")
    return data


class PageReader:
    """A batch's file held open while a worker reads a run of its sheets: a ZIP's directory is
    parsed once, and the PDF or TIFF being read stays open for its next page, instead of both
    for every sheet. Memory stays bounded: the directory (at most max_archive_entries) and one
    entry (at most max_entry_bytes). One thread at a time."""

    def __init__(self, path: Path, limits: Limits = Limits()):
        self.path, self.limits = path, limits
        self._archive: zipfile.ZipFile | None = None
        self._document: _Document | None = None
        try:
            if zipfile.is_zipfile(path):
                _check_directory(path, limits)
                self._archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise PageError(f"cannot read the batch's file: {exc}") from None

    def load(self, source: str, page: int, width: int) -> np.ndarray:
        """The page as a grayscale image; PDF pages are rendered as wide as `width` pixels (the
        template's canonical page), at least 150 dpi; larger scans are reduced on decode."""
        with _page_errors(source, self.limits):
            if PurePosixPath(source).suffix.lower() in MULTI_PAGE:
                return self._document_of(source).page(page, width)
            with Image.open(io.BytesIO(self._read(source)), formats=SINGLE_FORMATS) as image:
                return _grey(image, source, width, self.limits)

    def _read(self, source: str) -> bytes:
        try:
            if self._archive is None:
                with open(self.path, "rb") as f:
                    return _bounded_read(f, self.limits.max_entry_bytes)
            with self._archive.open(source) as f:
                return _bounded_read(f, self.limits.max_entry_bytes)
        except PageError:
            raise
        except Exception as exc:  # missing, encrypted, an unknown compression, a corrupt stream
            raise PageError(f"cannot read {source}: {exc}") from None

    def _document_of(self, source: str) -> _Document:
        if self._document is None or self._document.name != source:
            if self._document is not None:
                self._document.close()
                self._document = None
            self._document = _open_document(self._read(source), source, self.limits)
        return self._document

    def close(self) -> None:
        if self._document is not None:
            self._document.close()
        if self._archive is not None:
            self._archive.close()
        self._document = self._archive = None

    def __enter__(self) -> PageReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def _page_errors(source: str, limits: Limits) -> Iterator[None]:
    """Any file that cannot be decoded fails its sheet with the reason, never retried."""
    try:
        yield
    except PageError:
        raise
    except Image.DecompressionBombError as exc:
        raise PageError(f"image {source} is over the limit of {limits.max_pixels} pixels ({exc})") from None
    except Exception as exc:
        raise PageError(f"unreadable image {source}: {exc}") from None


def decode_page(data: bytes, source: str, page: int, width: int, limits: Limits = Limits()) -> np.ndarray:
    """One page of a file held in memory (an answer-key image sent with its task), under the
    same limits as a batch's pages."""
    with _page_errors(source, limits):
        if PurePosixPath(source).suffix.lower() in MULTI_PAGE:
            with _open_document(data, source, limits) as document:
                return document.page(page, width)
        with Image.open(io.BytesIO(data), formats=SINGLE_FORMATS) as image:
            return _grey(image, source, width, limits)


def load_page(path: Path, source: str, page: int, width: int, limits: Limits = Limits()) -> np.ndarray:
    """One page on its own (the review image): see PageReader.load."""
    with PageReader(path, limits) as reader:
        return reader.load(source, page, width)


def _grey(image: Image.Image, source: str, width: int, limits: Limits) -> np.ndarray:
    """The current frame in grayscale, its pixels and decoded bytes checked before it is decoded,
    and a scan more than 3x the template's width reduced to twice it (a JPEG while it is decoded,
    others band by band as they are converted): nothing downstream needs more, and memory stays
    bounded by max_decoded_bytes and a fraction of it."""
    if image.width * image.height > limits.max_pixels:
        raise PageError(
            f"image {source} of {image.width}x{image.height} pixels is over the limit of "
            f"{limits.max_pixels} pixels"
        )
    target = 2 * width
    if image.width > 3 * width and image.format == "JPEG":
        image.draft("L", (target, max(1, image.height * target // image.width)))
    decoded = image.width * image.height * _bytes_per_pixel(image.mode)
    if decoded > limits.max_decoded_bytes:
        raise PageError(
            f"image {source} of {image.width}x{image.height} {image.mode} pixels takes {decoded} bytes "
            f"decoded, over the limit of {limits.max_decoded_bytes}"
        )
    factor = -(-image.width // target) if image.width > 3 * width else 1  # rounded up: at most `target` wide
    return np.asarray(_reduced_grey(image, factor) if factor > 1 else _to_grey(image))


def _to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey. 16-bit grey scans (modes I;16 and I) are scaled down: Pillow's convert("L")
    clips every value above 255 to white, which made a whole 16-bit page blank paper."""
    if image.mode.startswith("I"):
        return Image.fromarray((np.asarray(image, dtype=np.uint32) // 257).clip(0, 255).astype(np.uint8))
    return image.convert("L")


def _reduced_grey(image: Image.Image, factor: int) -> Image.Image:
    """The image in grey, `factor` times smaller, converted and reduced a band of rows at a time:
    beside the decoded image, only a band's grey copy is held, never a whole one. The bands
    are whole multiples of `factor` rows, so the result is the same as at once."""
    band = factor * BAND_BLOCKS
    grey = Image.new("L", (-(-image.width // factor), -(-image.height // factor)))
    for top in range(0, image.height, band):
        rows = image.crop((0, top, image.width, min(image.height, top + band)))
        grey.paste(_to_grey(rows).reduce(factor), (0, top // factor))
    return grey


def _bytes_per_pixel(mode: str) -> int:
    """As Pillow holds a decoded image: one byte a pixel for bilevel, grey and palette images,
    two for 16-bit grey, four for everything else (RGB included)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4
