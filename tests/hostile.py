"""Hostile inputs built on the fly, small enough for CI: a TIFF of many tiny frames, a ZIP
of many entries, ZIP entries marked encrypted or compressed with a method nobody reads, a
PNG of huge dimensions, a PDF that renders for hours."""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
from PIL import Image

LOCAL, CENTRAL = b"PK\x03\x04", b"PK\x01\x02"


def tiff_frames(sizes: list[tuple[int, int]], pixels: bytes = b"\x00") -> bytes:
    """A little-endian 8-bit grayscale TIFF written by hand, one IFD per frame of the given
    size, every frame's strip pointing at the same `pixels`: 60,000 frames take 6.8 MB and a
    moment to build. A frame larger than `pixels` is never decodable: the limits must refuse
    it before decoding."""
    first = 8 + len(pixels) + len(pixels) % 2  # IFDs start on a word boundary
    ifd_size = 2 + 9 * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", first) + pixels + b"\x00" * (first - 8 - len(pixels)))
    for i, (w, h) in enumerate(sizes):
        following = first + (i + 1) * ifd_size if i + 1 < len(sizes) else 0
        out += struct.pack("<H", 9)
        for tag, kind, value in (
            (256, 4, w),
            (257, 4, h),
            (258, 3, 8),
            (259, 3, 1),
            (262, 3, 1),
            (273, 4, 8),
            (277, 3, 1),
            (278, 4, h),
            (279, 4, w * h),
        ):
            out += struct.pack("<HHII" if kind == 4 else "<HHIHxx", tag, kind, 1, value)
        out += struct.pack("<I", following)
    return bytes(out)


def tiny_frames_tiff(frames: int) -> bytes:
    return tiff_frames([(1, 1)] * frames)


def huge_png(side: int = 10_900, mode: str = "1") -> bytes:
    """About 0.5 MB on disk, 119 megapixels decoded: just under the pixel limit (in RGBA, 475 MB)."""
    out = io.BytesIO()
    Image.new(mode, (side, side), 1).save(out, "PNG")
    return out.getvalue()


def many_entries_zip(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(count):
            z.writestr(f"e{i}.txt", b"")
    return out.getvalue()


def zip_with(
    entries: dict[str, bytes], *, flag: dict[str, int] | None = None, method: dict[str, int] | None = None
) -> bytes:
    """A stored ZIP whose named entries get general-purpose flag bits set (1: encrypted) or
    another compression method (9: deflate64), in both the local and the central header:
    what `zip -e` or Windows' deflate64 write, without needing either."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    data = bytearray(out.getvalue())
    flag, method = flag or {}, method or {}
    for signature, fixed, name_len_at, flags_at in ((LOCAL, 30, 26, 6), (CENTRAL, 46, 28, 8)):
        at = data.find(signature)
        while at >= 0:
            (length,) = struct.unpack_from("<H", data, at + name_len_at)
            name = bytes(data[at + fixed : at + fixed + length]).decode()
            if name in flag:
                (bits,) = struct.unpack_from("<H", data, at + flags_at)
                struct.pack_into("<H", data, at + flags_at, bits | flag[name])
            if name in method:
                struct.pack_into("<H", data, at + flags_at + 2, method[name])
            at = data.find(signature, at + 4)
    return bytes(data)


def small_png(value: int = 200) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((30, 40), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


def nested_forms_pdf(levels: int = 8, fan: int = 20) -> bytes:
    """A one-page PDF of about 4 KB whose page draws a form XObject that draws the one below it
    `fan` times, `levels` deep: fan ** levels rectangles, hours of rendering for pdfium."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /XObject << /X %d 0 R >> >>"
        b" /Contents 4 0 R >>" % (4 + levels),
        _stream(b"", b"q /X Do Q"),
    ]
    for level in range(levels):
        draws = b" ".join(b"q 1 0 0 1 %d %d cm /X Do Q" % (i % 7, i // 7) for i in range(fan))
        resources = b"/Resources << /XObject << /X %d 0 R >> >>" % (4 + level) if level else b""
        objects.append(
            _stream(
                b"/Type /XObject /Subtype /Form /BBox [0 0 600 850] " + resources,
                draws if level else b"0 0 1 1 re f",
            )
        )
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    table = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, table)
    return bytes(out)


def _stream(entries: bytes, content: bytes) -> bytes:
    return b"<< %s/Length %d >>\nstream\n%s\nendstream" % (entries, len(content), content)
