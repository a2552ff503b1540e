"""Printable sheets for a whole class: one page per student, rendered as they are written,
so a PDF of thousands of pages never sits in memory."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from .render import DPI, render_sheet
from .template import Template


def read_students(path: Path) -> list[str]:
    """Student ids from the first column of a CSV (a header row named student_id is skipped)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        ids = [row[0].strip() for row in csv.reader(f) if row and row[0].strip()]
    if ids and ids[0].lower() in ("student_id", "student", "id"):
        ids = ids[1:]
    bad = [s for s in ids if not (1 <= len(s) <= 32 and all(c.isalnum() or c == "-" for c in s))]
    if bad:
        raise ValueError(f"{path}: student ids must be 1-32 of 0-9A-Za-z-, not {bad[0]!r}")
    return ids


class _Pages:
    """Re-iterable and lazy: Pillow walks the pages twice (to count, then to write)."""

    def __init__(self, render: Callable[[str], Image.Image], students: list[str]):
        self.render = render
        self.students = students

    def __iter__(self) -> Iterator[Image.Image]:
        return (self.render(s) for s in self.students)

    def __len__(self) -> int:
        return len(self.students)


def write_sheets(
    template: Template,
    task_id: str,
    students: list[str],
    out: Path,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> list[Path]:
    """Writes a .pdf (all pages) or .png files (<stem>-<student>.png); returns the files."""
    if not students:
        raise ValueError("no students to render sheets for")
    done = 0

    def render(student: str) -> Image.Image:
        nonlocal done
        done += 1
        progress(min(done, len(students)), len(students))
        return Image.fromarray(render_sheet(template, task_id, student))

    suffix = out.suffix.lower()
    if suffix == ".pdf":
        first = render(students[0])
        first.save(out, save_all=True, append_images=_Pages(render, students[1:]), resolution=float(DPI))
        return [out]
    if suffix == ".png":
        files = []
        for student in students:
            name = out if len(students) == 1 else out.with_name(f"{out.stem}-{student}.png")
            render(student).save(name, dpi=(DPI, DPI))
            files.append(name)
        return files
    raise ValueError(f"{out.name}: write .pdf or .png")
