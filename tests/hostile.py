"""Hostile inputs built on the fly, small enough for CI: a TIFF of many tiny frames, a ZIP
of many entries, ZIP entries marked encrypted or compressed with a method nobody reads, a
PNG of huge dimensions."""

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
        for tag, kind, value in ((256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8),
                                 (277, 3, 1), (278, 4, h), (279, 4, w * h)):
            out += struct.pack("<HHII" if kind == 4 else "<HHIHxx", tag, kind, 1, value)
        out += struct.pack("<I", following)
    return bytes(out)


def tiny_frames_tiff(frames: int) -> bytes:
    return tiff_frames([(1, 1)] * frames)


def huge_png(side: int = 10_900) -> bytes:
    """About 0.5 MB on disk, 119 megapixels decoded: just under the pixel limit."""
    out = io.BytesIO()
    Image.new("1", (side, side), 1).save(out, "PNG")
    return out.getvalue()


def many_entries_zip(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i in range(count):
            z.writestr(f"e{i}.txt", b"")
    return out.getvalue()


def zip_with(entries: dict[str, bytes], *, flag: dict[str, int] | None = None,
             method: dict[str, int] | None = None) -> bytes:
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
            name = bytes(data[at + fixed:at + fixed + length]).decode()
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
