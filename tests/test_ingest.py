"""Listing a batch's pages safely, and loading each page: no extraction, limits enforced."""

import io
import stat
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from omr_tus.batches.ingest import Limits, PageError, list_pages, load_page


def png(width=40, height=30, value=200) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width), value, np.uint8)).save(out, "PNG")
    return out.getvalue()


def tiff(pages: int) -> bytes:
    out = io.BytesIO()
    frames = [Image.fromarray(np.full((20, 20), 50 * i, np.uint8)) for i in range(pages)]
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def pdf(pages: int) -> bytes:
    out = io.BytesIO()
    frames = [Image.new("L", (200, 280), 255) for _ in range(pages)]
    frames[0].save(out, "PDF", save_all=True, append_images=frames[1:], resolution=72)
    return out.getvalue()


def make_zip(path, entries: dict, symlinks=()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return path


def test_listing_is_safe_and_complete(tmp_path):
    path = make_zip(
        tmp_path / "b.zip",
        {
            "class A/s1.JPG": png(),
            "class A/deep/s2.png": png(),
            "scan.tiff": tiff(3),
            "doc.pdf": pdf(2),
            "__MACOSX/class A/._s1.JPG": b"x",
            ".hidden.png": png(),
            "class A/.DS_Store": b"x",
            "Thumbs.db": b"x",
            "desktop.ini": b"x",
            "notes.txt": b"hello",
            "../../x.png": png(),
            "/abs.png": png(),
            "bomb.png": b"\0" * (20 * 1024 * 1024),
        },
        symlinks=["link.png"],
    )
    listing = list_pages(path, "b.zip")
    assert listing.error is None
    assert sorted(listing.pages) == sorted(
        [
            ("class A/s1.JPG", 1),
            ("class A/deep/s2.png", 1),
            ("scan.tiff", 1),
            ("scan.tiff", 2),
            ("scan.tiff", 3),
            ("doc.pdf", 1),
            ("doc.pdf", 2),
        ]
    )
    reasons = {s["entry"]: s["reason"] for s in listing.skipped}
    assert set(reasons) == {"notes.txt", "../../x.png", "/abs.png", "bomb.png", "link.png"}
    assert "not a sheet image" in reasons["notes.txt"]
    assert "unsafe path" in reasons["../../x.png"] and "unsafe path" in reasons["/abs.png"]
    assert "compression ratio" in reasons["bomb.png"]
    assert reasons["link.png"] == "symbolic link"


def test_a_repeated_entry_name_is_read_once(tmp_path):
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        z.writestr("s1.png", png())
        z.writestr("s1.png", png())
    listing = list_pages(path, "dup.zip")
    assert listing.pages == [("s1.png", 1)]
    assert listing.skipped == [
        {"entry": "s1.png", "reason": "a second entry of the same name (only the first is read)"}
    ]


def test_limits_on_count_and_size(tmp_path):
    path = make_zip(tmp_path / "b.zip", {f"{i}.png": png() for i in range(5)})
    listing = list_pages(path, "b.zip", Limits(max_entries=3))
    assert len(listing.pages) == 3 and len(listing.skipped) == 2
    assert "more than 3 pages" in listing.skipped[0]["reason"]


@pytest.mark.parametrize(
    "content,expect",
    [
        (b"PK\x03\x04 this is not really a zip", "neither a ZIP"),
        (b"garbage", "neither a ZIP"),
    ],
)
def test_unreadable_file(tmp_path, content, expect):
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    listing = list_pages(path, "upload.zip")
    assert listing.pages == [] and expect in listing.error


def test_single_image_upload(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(tiff(2))
    assert list_pages(path, "sheets.TIF").pages == [("sheets.TIF", 1), ("sheets.TIF", 2)]


def test_load_pages(tmp_path):
    path = make_zip(tmp_path / "b.zip", {"a.png": png(40, 30, 77), "t.tif": tiff(3), "d.pdf": pdf(1)})
    assert load_page(path, "a.png", 1, 1654).shape == (30, 40)
    assert int(load_page(path, "t.tif", 3, 1654)[0, 0]) == 100
    page = load_page(path, "d.pdf", 1, 1654)
    assert page.shape[1] == 1654  # as wide as the template's canonical page


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("trunc.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "unreadable image"),
        ("huge.png", None, "over the limit"),
        ("broken.pdf", b"%PDF-1.4 nothing", "unreadable"),
    ],
)
def test_bad_pages_fail_with_a_reason(tmp_path, name, data, reason):
    if data is None:  # a 30000 x 30000 PNG: small on disk, 900 megapixels decoded
        out = io.BytesIO()
        Image.new("1", (30000, 30000)).save(out, "PNG")
        data = out.getvalue()
    path = make_zip(tmp_path / "b.zip", {name: data})
    listing = list_pages(path, "b.zip")
    assert listing.pages == [(name, 1)]
    with pytest.raises(PageError, match=reason):
        load_page(path, name, 1, 1654)


def pdf_of(pages: int) -> bytes:
    import pypdfium2

    document = pypdfium2.PdfDocument.new()
    for _ in range(pages):
        document.new_page(200, 280)
    out = io.BytesIO()
    document.save(out)
    document.close()
    return out.getvalue()


def test_a_pdf_of_10000_pages_is_refused_with_a_reason(tmp_path):
    """Counted from the PDF's page tree, never rendered: refused whether it is the upload itself
    (the batch fails) or an entry of a ZIP (its sheet fails)."""
    data = pdf_of(10_000)
    alone = tmp_path / "big.pdf"
    alone.write_bytes(data)
    listing = list_pages(alone, "big.pdf")
    assert listing.pages == [] and "10000 pages is over the limit of 2000" in listing.error
    zipped = make_zip(tmp_path / "b.zip", {"big.pdf": data, "ok.png": png()})
    listing = list_pages(zipped, "b.zip")
    assert sorted(listing.pages) == [("big.pdf", 1), ("ok.png", 1)]
    with pytest.raises(PageError, match="10000 pages is over the limit"):
        load_page(zipped, "big.pdf", 1, 1654)


@pytest.mark.parametrize("fmt,reduced", [("PNG", False), ("TIFF", False), ("PNG", True)])
def test_16_bit_grey_scans_keep_their_grey_levels(tmp_path, fmt, reduced):
    """A 16-bit grey scan reads as the same page as its 8-bit version (Pillow's convert("L")
    clipped every 16-bit value to white: the page read as blank paper), also when a large
    scan is reduced band by band."""
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1))  # 48 x 64, dark to light
    path = tmp_path / f"s.{fmt.lower()}"
    Image.fromarray(grey.astype(np.uint16) * 257).save(path, fmt)
    width = 10 if reduced else 1654  # a page more than 3x the template's width is reduced
    page = load_page(path, path.name, 1, width)
    expected = np.asarray(Image.fromarray(grey).reduce(-(-64 // 20))) if reduced else grey
    assert page.shape == expected.shape
    assert np.abs(page.astype(int) - expected.astype(int)).max() <= 1
