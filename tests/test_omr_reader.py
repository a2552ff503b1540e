"""Render -> (simulated scan) -> read: the reader must be exact on clean pages and, on doubtful
scans, send a sheet to review rather than report a wrong answer."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pypdfium2
import pytest
from PIL import Image, ImageFile

from omr_tus.omr import simulate
from omr_tus.omr.reader import find_qr_payload, parse_qr, read_sheet
from omr_tus.omr.render import render_sheet, write_pages
from omr_tus.omr.template import Template

ROOT = Path(__file__).resolve().parent.parent
TASK = "11600111"


def load(name: str) -> Template:
    return Template.parse(json.loads((ROOT / "config" / "templates" / f"{name}.json").read_text()))


EXAM, QUIZ = load("exam-60-mcq4"), load("quiz-20-mcq5")


def clean_sheet(template: Template, seed: int) -> tuple[np.ndarray, str, dict[str, str | None]]:
    rng = np.random.default_rng(seed)
    student, answers = simulate.random_answers(template, rng, blank=0.1, multiple=0.1)
    truth = simulate.column_truth(template, answers, set())
    return render_sheet(template, TASK, student, answers), student, truth


@pytest.mark.parametrize("qr", ["OMR:11600111:20250042", " OMR:11600111:0042-ab\n"])
def test_parse_qr_good(qr):
    assert parse_qr(qr) == ("11600111", qr.strip().split(":")[2], None)


def test_parse_qr_page_and_bad():
    assert parse_qr("OMR:11600111:20250042:2") == ("11600111", "20250042", 2)
    for bad in [
        "",
        "OMR:1:",
        "omr:1:2",
        "OMR:1:2:0",
        "OMR:1:2:x",
        "OMR:a b:2",
        "OMR:1:" + "9" * 33,
        "http://x",
        None,
    ]:
        assert parse_qr(bad) is None, bad


@pytest.mark.parametrize("template", [EXAM, QUIZ], ids=["exam", "quiz"])
@pytest.mark.parametrize("seed", [1, 2])
def test_clean_render_reads_exactly(template, seed):
    page, student, truth = clean_sheet(template, seed)
    r = read_sheet(page, template)
    assert (r.status, r.error) == ("ok", None)
    assert (r.task_id, r.student_id, r.page) == (TASK, student, None)
    assert r.answers == truth
    assert r.alignment_error < 0.5
    assert min(r.confidence.values()) == 1.0
    for column, value in r.answers.items():
        several = len(value) > 1 and column != "student_id"
        assert r.flags[column] == (["blank"] if value == "" else ["multiple"] if several else []), column


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_quarter_turns_and_colour(turn):
    page, _, truth = clean_sheet(EXAM, 3)
    r = read_sheet(cv2.cvtColor(cv2.rotate(page, turn), cv2.COLOR_GRAY2BGR), EXAM)
    assert r.status == "ok" and r.answers == truth


def test_three_markers_are_enough():
    page, _, truth = clean_sheet(QUIZ, 4)
    x, y = QUIZ.markers.positions[12]
    page[y : y + QUIZ.markers.size, x : x + QUIZ.markers.size] = 255
    r = read_sheet(cv2.resize(page, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA), QUIZ)
    assert r.status == "ok" and r.answers == truth


@pytest.mark.parametrize(("marker", "dx", "dy"), [(3, -30, -30), (3, 30, -30), (0, 45, 45), (1, -45, 45)])
def test_misplaced_marker_is_never_confidently_wrong(marker, dx, dy):
    """A stray marker bends the fit through it (4 points fix a homography), so the misfit stays
    small: the blocks are then found on their print (moved, stretched) and read right, or the
    bubbles left off it are flagged and the sheet goes to review; never `ok` with a wrong answer."""
    page, _, truth = clean_sheet(EXAM, 12)
    x, y = EXAM.markers.positions[marker]
    printed = page[y : y + 80, x : x + 80].copy()
    page[y : y + 80, x : x + 80] = 255
    page[y + dy : y + dy + 80, x + dx : x + dx + 80] = printed
    r = read_sheet(page, EXAM)
    wrong = [column for column, value in truth.items() if r.answers[column] != value]
    assert r.status == "needs_review" if wrong else r.status in ("ok", "needs_review"), wrong
    assert all("ambiguous" in r.flags[column] for column in wrong), wrong


def test_two_markers_fail():
    page, _, _ = clean_sheet(EXAM, 5)
    for marker_id in (0, 3):
        x, y = EXAM.markers.positions[marker_id]
        page[y : y + 80, x : x + 80] = 255
    r = read_sheet(page, EXAM)
    assert r.status == "failed" and "markers" in r.error and r.answers == {}


def test_qr_and_bubbled_student_id_disagree():
    page = render_sheet(EXAM, TASK, "99999999", {"student_id": "20250042", "q1": "A"})
    r = read_sheet(page, EXAM)
    assert r.status == "needs_review" and r.student_id == "99999999"
    assert r.answers["student_id"] == "20250042" and "20250042" in r.error


def test_unreadable_qr_needs_review():
    page, student, truth = clean_sheet(QUIZ, 6)
    q = QUIZ.qr
    page[q.y + q.size // 3 : q.y + q.size * 2 // 3, q.x : q.x + q.size] = 0
    r = read_sheet(page, QUIZ)
    assert r.status == "needs_review" and "QR" in r.error
    assert r.task_id is None and r.student_id == student  # bubbled id, clean and unflagged
    assert r.answers == truth


def test_blank_student_digit_makes_the_column_ambiguous():
    page = render_sheet(EXAM, TASK, "20250042", {"student_id": "20250042"})
    sid = EXAM.field_map()["sid3"].bubbles[2]
    page[sid.y : sid.y + sid.h, sid.x : sid.x + sid.w] = 255  # rub out the third digit's "2"
    r = read_sheet(page, EXAM)
    assert r.status == "needs_review" and r.flags["student_id"] == ["ambiguous"]
    assert r.student_id == "20250042" and r.confidence["student_id"] <= 0.5


def test_blank_page_fails_with_reason():
    r = read_sheet(np.full((2339, 1654), 255, np.uint8), EXAM)
    assert r.status == "failed" and "found 0 of the template's 4 markers" in r.error


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((100,), np.uint8),
        np.zeros((10, 10), np.uint8),
        np.zeros((200, 200, 5), np.uint8),
        np.zeros((300, 300), np.float64),
        "not an array",
        np.zeros((0, 300), np.uint8),
        np.random.default_rng(0).integers(0, 256, (600, 400, 3), dtype=np.uint8),
    ],
    ids=["1d", "tiny", "5-channel", "float", "str", "empty", "noise"],
)
def test_garbage_fails_cleanly(image):
    r = read_sheet(image, EXAM)
    assert r.status == "failed" and r.error and r.answers == {}


def test_truncated_scan_fails(monkeypatch):
    page, _, _ = clean_sheet(EXAM, 7)
    data = cv2.imencode(".jpg", page)[1].tobytes()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    image = np.array(Image.open(io.BytesIO(data[: len(data) // 2])))  # lower part left grey
    assert image.shape == page.shape
    r = read_sheet(image, EXAM)
    assert r.status == "failed" and "markers" in r.error
    assert read_sheet(page[:800], EXAM).status == "failed"


def test_find_qr_payload_on_an_unaligned_scan():
    page, student, _ = clean_sheet(QUIZ, 10)
    assert find_qr_payload(cv2.rotate(page, cv2.ROTATE_180)) == f"OMR:{TASK}:{student}"
    assert find_qr_payload(np.full((500, 400), 255, np.uint8)) is None
    assert find_qr_payload(np.zeros(3)) is None


def test_template_without_markers_uses_the_page_outline():
    template = Template.parse(
        {
            "pageDimensions": [300, 400],
            "bubbleDimensions": [25, 25],
            "fieldBlocks": {
                "B": {
                    "fieldType": "QTYPE_MCQ5",
                    "origin": [65, 60],
                    "fieldLabels": ["q1..5"],
                    "labelsGap": 52,
                    "bubblesGap": 41,
                }
            },
        }
    )
    page = render_sheet(template, TASK, "1", {"q1": "B", "q2": "", "q3": "AE", "q4": "D", "q5": "C"})
    big = cv2.resize(page, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    level = simulate.Difficulty(4, 0.01, (0,), (0.5, 0.8), (1, 3), (85, 90), (200,))
    scan = simulate.scan(big, np.random.default_rng(8), level, background=40)
    r = read_sheet(scan, template)
    assert r.status == "ok", r.error
    assert r.answers == {"q1": "B", "q2": "", "q3": "AE", "q4": "D", "q5": "C"}


def test_simulator_is_deterministic():
    a = simulate.simulate_sheet(QUIZ, np.random.default_rng(9), simulate.HARD)
    b = simulate.simulate_sheet(QUIZ, np.random.default_rng(9), simulate.HARD)
    assert np.array_equal(a.image, b.image) and a.truth == b.truth


def tally(name: str, sheets: int, seed: int) -> tuple[Counter, list]:
    """Per column: right, flagged (ambiguous) or wrong (a value that differs, unflagged)."""
    rng, level = np.random.default_rng(seed), getattr(simulate, name)
    counts, results = Counter(), []
    for n in range(sheets):
        template = (EXAM, QUIZ)[n % 2]
        sheet = simulate.simulate_sheet(template, rng, level)
        r = read_sheet(sheet.image, template)
        results.append((sheet, r))
        counts[r.status] += 1
        for column, truth in sheet.truth.items():
            flagged = "ambiguous" in r.flags.get(column, [])
            verdict = "flagged" if flagged else "right" if r.answers.get(column) == truth else "wrong"
            counts[f"{verdict}_{'ok' if r.status == 'ok' else 'review'}"] += 1
    print(name, dict(counts))
    return counts, results


@pytest.mark.parametrize("level,sheets,seed", [("EASY", 8, 101), ("MEDIUM", 10, 202), ("HARD", 14, 303)])
def test_simulated_scans_never_wrong_unless_flagged(level, sheets, seed):
    counts, results = tally(level, sheets, seed)
    assert counts["failed"] == 0
    assert counts["wrong_ok"] == 0  # nothing wrong passes as a clean sheet
    for sheet, r in results:
        for column, truth in sheet.truth.items():  # what must be flagged is flagged
            if truth is None:
                assert r.status == "needs_review" and "ambiguous" in r.flags[column]
    assert counts["ok"] >= sheets // 2


def test_easy_scans_are_read_completely():
    _, results = tally("EASY", 6, 404)
    for sheet, r in results:
        assert r.status == "ok", r.error
        assert (r.task_id, r.student_id) == (sheet.task_id, sheet.student_id)
        assert r.answers == sheet.truth


def test_write_pages(tmp_path):
    pages = [render_sheet(QUIZ, TASK, f"00000{n}") for n in (1, 2)]
    write_pages(pages, tmp_path / "sheets.pdf")
    pdf = pypdfium2.PdfDocument(tmp_path / "sheets.pdf")
    assert len(pdf) == 2 and round(pdf[0].get_width() / 72 * 200) == 1654
    rendered = np.array(pdf[1].render(scale=200 / 72).to_pil().convert("L"))
    assert read_sheet(rendered, QUIZ).student_id == "000002"
    write_pages(pages, tmp_path / "two.png")
    write_pages(pages[:1], tmp_path / "one.png")
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["one.png", "two-1.png", "two-2.png"]
    assert Image.open(tmp_path / "two-2.png").size == (1654, 2339)
    with pytest.raises(ValueError):
        write_pages(pages, tmp_path / "x.gif")
