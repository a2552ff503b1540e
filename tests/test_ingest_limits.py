"""Hostile files meet the ingest limits: refused or failed with a reason, in bounded time
and memory, never wedging the worker (issue 15)."""

import io
import struct
import zipfile

import pytest
from PIL import Image

from omr_tus.batches import ingest
from omr_tus.batches.ingest import Limits, PageError, PageReader, list_pages, load_page

from .hostile import (
    huge_png,
    many_entries_zip,
    nested_forms_pdf,
    small_png,
    tiff_frames,
    tiny_frames_tiff,
    zip_with,
)
from .test_ingest import make_zip, pdf


def test_a_tiff_of_60000_tiny_frames_is_refused_not_60000_sheets(tmp_path):
    path = tmp_path / "frames.tif"
    path.write_bytes(tiny_frames_tiff(60_000))
    listing = list_pages(path, "frames.tif")
    assert listing.pages == [] and "TIF of more than 2000 frames is over the limit of 2000" in listing.error
    zipped = make_zip(tmp_path / "b.zip", {"frames.tif": tiny_frames_tiff(60_000), "ok.png": small_png()})
    listing = list_pages(zipped, "b.zip")
    assert sorted(listing.pages) == [("frames.tif", 1), ("ok.png", 1)]  # its one sheet fails with the reason
    with pytest.raises(PageError, match="more than 2000 frames"):
        load_page(zipped, "frames.tif", 1, 1654)


def test_a_tiff_at_the_frame_limit_is_read(tmp_path):
    path = tmp_path / "frames.tif"
    path.write_bytes(tiny_frames_tiff(2_000))
    assert len(list_pages(path, "frames.tif").pages) == 2_000


def test_pages_per_batch_are_capped_after_counting_a_file(tmp_path):
    path = make_zip(tmp_path / "b.zip", {"a.tif": tiny_frames_tiff(3), "b.tif": tiny_frames_tiff(3)})
    listing = list_pages(path, "b.zip", Limits(max_entries=4))
    assert listing.pages == [("a.tif", n) for n in (1, 2, 3)]
    assert listing.skipped == [{"entry": "b.tif", "reason": "more than 4 pages in one batch"}]


def test_every_frame_is_checked_for_pixels_before_decoding(tmp_path):
    path = tmp_path / "f.tif"
    path.write_bytes(tiff_frames([(1, 1), (12_000, 12_000)]))  # 144 megapixels on frame 2 only
    assert list_pages(path, "f.tif").pages == [("f.tif", 1), ("f.tif", 2)]
    assert load_page(path, "f.tif", 1, 1654).shape == (1, 1)
    with pytest.raises(PageError, match="12000x12000 pixels is over the limit"):
        load_page(path, "f.tif", 2, 1654)


def test_a_zip_declaring_too_many_entries_fails_before_its_directory_is_parsed(tmp_path, monkeypatch):
    path = tmp_path / "many.zip"
    path.write_bytes(many_entries_zip(1_500))
    parsed = []
    monkeypatch.setattr(
        ingest.zipfile, "ZipFile", lambda *a, **k: parsed.append(a) or zipfile.ZipFile(*a, **k)
    )
    listing = list_pages(path, "many.zip", Limits(max_archive_entries=1_000))
    assert listing.pages == [] and "ZIP of 1500 entries is over the limit of 1000" in listing.error
    assert parsed == []


def test_skipped_entries_are_named_up_to_a_limit_and_all_counted(tmp_path):
    path = tmp_path / "many.zip"
    path.write_bytes(many_entries_zip(1_200))
    listing = list_pages(path, "many.zip")
    assert listing.error is None and listing.pages == []
    assert len(listing.skipped) == 1_000 and listing.skipped_count == 1_200


@pytest.mark.parametrize(
    "flag,method,reason",
    [
        (1, None, "encrypted"),
        (None, 9, "compressed with method 9"),
    ],
)
def test_encrypted_or_unreadable_compression_entries_are_skipped_with_the_reason(
    tmp_path, flag, method, reason
):
    entries = {"locked.tif": tiny_frames_tiff(2), "locked.png": small_png(), "ok.png": small_png()}
    locked = {"locked.tif": flag or method, "locked.png": flag or method}
    path = tmp_path / "b.zip"
    path.write_bytes(zip_with(entries, **({"flag": locked} if flag else {"method": locked})))
    listing = list_pages(path, "b.zip")
    assert listing.error is None and listing.pages == [("ok.png", 1)]
    assert {s["entry"] for s in listing.skipped} == {"locked.tif", "locked.png"}
    assert all(reason in s["reason"] for s in listing.skipped)
    with pytest.raises(PageError, match="cannot read locked.png"):  # and were it read anyway: a reason
        load_page(path, "locked.png", 1, 1654)


def test_a_corrupt_file_fails_with_its_reason_instead_of_raising(tmp_path):
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)
    listing = list_pages(path, "bad.tif")
    assert listing.pages == [] and "unreadable" in listing.error.lower()


def test_a_huge_png_is_reduced_as_it_is_decoded(tmp_path):
    path = make_zip(tmp_path / "b.zip", {"huge.png": huge_png()})
    page = load_page(path, "huge.png", 1, 1654)
    assert page.shape[1] <= 2 * 1654 and page.shape[0] == page.shape[1]


def test_the_reader_opens_a_zip_once_for_all_its_sheets(tmp_path, monkeypatch):
    path = make_zip(
        tmp_path / "b.zip", {"t.tif": tiny_frames_tiff(50), **{f"{i}.png": small_png() for i in range(5)}}
    )
    opened = []
    real = ingest.zipfile.ZipFile
    monkeypatch.setattr(ingest.zipfile, "ZipFile", lambda *a, **k: opened.append(a) or real(*a, **k))
    documents = []
    real_document = ingest.Image.open
    monkeypatch.setattr(ingest.Image, "open", lambda *a, **k: documents.append(a) or real_document(*a, **k))
    with PageReader(path) as reader:
        for n in range(1, 51):
            assert reader.load("t.tif", n, 1654).shape == (1, 1)
        for i in range(5):
            assert reader.load(f"{i}.png", 1, 1654).shape == (30, 40)
    assert len(opened) == 1
    assert len(documents) == 1 + 5  # the TIFF once for its 50 frames, each PNG once


def test_a_zip_that_understates_its_entry_count_is_refused_by_its_directory_size(tmp_path):
    """zipfile parses the directory by its size, whatever count the end record declares."""
    data = bytearray(many_entries_zip(2_000))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)  # "1 entry" on this disk and in all
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(data))
    listing = list_pages(path, "liar.zip", Limits(max_archive_entries=10))
    assert (
        listing.pages == []
        and "a ZIP directory of" in listing.error
        and "over the limit of 2560" in listing.error
    )


def test_a_large_jpeg_is_reduced_while_it_is_decoded(tmp_path):
    """JPEG decoders scale by 1/2, 1/4 or 1/8 as they decode: the 8000-pixel-wide page is
    decoded at 1/2 (the largest scale at least twice the template's width), never in full."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (8000, 6000), 200).save(out, "JPEG", quality=50)
    path = make_zip(tmp_path / "b.zip", {"big.jpg": out.getvalue()})
    assert load_page(path, "big.jpg", 1, 1654).shape == (3000, 4000)


def test_a_zip64_record_cannot_hide_the_entry_count_behind_a_small_end_record(tmp_path):
    """zipfile takes the ZIP64 end record whenever its locator is there, whatever the classic
    record says: a classic record declaring 1 entry in 100 bytes hides nothing."""
    data = bytearray(many_entries_zip(150))
    end = data.rfind(b"PK\x05\x06")
    size, offset = struct.unpack_from("<II", data, end + 12)
    zip64 = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 150, 150, size, offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)
    struct.pack_into("<HHI", data, end + 8, 1, 1, 100)
    path = tmp_path / "z64.zip"
    path.write_bytes(bytes(data[:end]) + zip64 + locator + bytes(data[end:]))
    with zipfile.ZipFile(path) as z:
        assert len(z.infolist()) == 150  # what zipfile would parse
    listing = list_pages(path, "z64.zip", Limits(max_archive_entries=100))
    assert listing.pages == [] and "ZIP of 150 entries is over the limit of 100" in listing.error


def test_a_pdf_that_renders_for_hours_fails_its_page_within_the_limit(tmp_path):
    """pdfium renders in a child process that is killed at the limit; the next PDF is read by a
    new child, and the one after by the same (no process start per sheet)."""
    path = make_zip(tmp_path / "b.zip", {"bomb.pdf": nested_forms_pdf(), "ok.pdf": pdf(1), "ok2.pdf": pdf(1)})
    assert len(nested_forms_pdf()) < 8_000
    assert list_pages(path, "b.zip").pages == [("bomb.pdf", 1), ("ok.pdf", 1), ("ok2.pdf", 1)]
    with PageReader(path, Limits(max_pdf_seconds=1)) as reader:
        with pytest.raises(PageError, match="bomb.pdf: rendering page 1 took longer than 1 s"):
            reader.load("bomb.pdf", 1, 1654)
        assert reader.load("ok.pdf", 1, 1654).shape[1] == 1654
        assert reader.load("ok2.pdf", 1, 1654).shape[1] == 1654


def test_listing_a_batch_counts_frames_within_one_budget(tmp_path):
    """Twenty TIFFs each just over the per-file frame limit: each was walked to the limit and
    listed as one failing sheet, entries x limit seeks in all (200 x 2,001: 54 s). One budget per
    batch: 101 + 101 frames, then 49 of the third file, and the rest are skipped with the reason."""
    path = make_zip(tmp_path / "b.zip", {f"s{i:02d}.tif": tiny_frames_tiff(101) for i in range(20)})
    listing = list_pages(path, "b.zip", Limits(max_file_pages=100, max_frames_walked=250))
    assert listing.pages == [("s00.tif", 1), ("s01.tif", 1)]  # over the file limit: sheets that fail
    assert listing.skipped_count == 18 and all("limit of 250 frames" in s["reason"] for s in listing.skipped)


def test_a_gif_named_tif_is_not_walked_frame_by_frame(tmp_path):
    frames = [Image.new("L", (8, 8), i) for i in range(5)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    path = make_zip(tmp_path / "b.zip", {"anim.tif": out.getvalue(), "anim.png": out.getvalue()})
    assert sorted(list_pages(path, "b.zip").pages) == [("anim.png", 1), ("anim.tif", 1)]
    with pytest.raises(PageError, match="unreadable TIF"):
        load_page(path, "anim.tif", 1, 1654)
    assert load_page(path, "anim.png", 1, 1654).shape == (8, 8)  # a single image: its first frame only


@pytest.mark.parametrize(
    "mode,side,refused",
    [
        ("L", 600, False),
        ("I;16", 600, False),
        ("RGBA", 400, False),
        ("I;16", 800, True),
        ("RGBA", 600, True),
        ("RGB", 600, True),
    ],
)
def test_a_page_is_refused_by_its_decoded_bytes_before_it_is_decoded(tmp_path, mode, side, refused):
    """Bytes, not only pixels: a 10,900-pixel-square RGBA PNG is 475 MB decoded (four bytes a
    pixel), a 16-bit one 237 MB, where a bilevel one of the same pixels is 119 MB."""
    out = io.BytesIO()
    Image.new(mode, (side, side)).save(out, "PNG")
    path = make_zip(tmp_path / "b.zip", {"p.png": out.getvalue()})
    limits = Limits(max_decoded_bytes=1_000_000)
    if refused:
        with pytest.raises(
            PageError, match=f"{side}x{side} {mode} pixels takes .* over the limit of 1000000"
        ):
            load_page(path, "p.png", 1, 100, limits)
    else:
        assert load_page(path, "p.png", 1, 100, limits).shape == (200, 200)  # reduced to twice the width
