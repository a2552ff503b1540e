"""The same sheet encoded as files an exam office might upload (16-bit PNG, palette PNG, CMYK
JPEG, PNG with a transparent background), decoded the way the worker does (decode_page), read."""

from __future__ import annotations

import io
import sys

import cv2
import numpy as np
from PIL import Image

from omr_tus.batches.ingest import PageError, decode_page
from omr_tus.omr.reader import read_sheet
from tests.adversary import harness as h


def encodings(image: np.ndarray) -> dict[str, tuple[str, bytes]]:
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    rgb = Image.fromarray(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    out = {}

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out[name] = (f"sheet.{'jpg' if fmt == 'JPEG' else fmt.lower()}", buf.getvalue())

    save("png16", Image.fromarray(gray.astype(np.uint16) * 257), "PNG")
    save("palette", rgb.convert("P", palette=Image.ADAPTIVE, colors=16), "PNG")
    save("cmyk_jpeg", rgb.convert("CMYK"), "JPEG", quality=90)
    ink = 255 - gray
    rgba = np.zeros(gray.shape + (4,), np.uint8)
    rgba[:, :, 3] = ink  # black ink on a transparent background
    save("transparent_png", Image.fromarray(rgba, "RGBA"), "PNG")
    save("gray_alpha", Image.fromarray(np.dstack([gray, np.full_like(gray, 255)]), "LA"), "PNG")
    save("tiff16", Image.fromarray(gray.astype(np.uint16) * 257), "TIFF")
    return out


def main() -> None:
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for _ in range(count):
        image, template, truth = h.sheet(h.FORM, rng)
        for name, (source, data) in encodings(image).items():
            try:
                page = decode_page(data, source, 1, template.page[0])
            except PageError as e:
                print(name, "PageError", e)
                continue
            result = read_sheet(page, template, qr_expected=False)
            bad = h.wrong_on_ok(result, truth)
            print(name, result.status, (result.error or "")[:80], "OK-AND-WRONG" if bad else "", bad[:3])


if __name__ == "__main__":
    main()
