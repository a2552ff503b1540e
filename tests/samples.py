"""OMRChecker's sample folders as OMRChecker walks them, and our answers compared with its own.

A folder with a template.json starts a task; it takes the nearest config.json up the tree and
the evaluation.json beside it. Every expected.csv below it (and not below a deeper template)
lists the images read with that task and what OMRChecker read from them.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

FIXED = ("file", "score")


@dataclass
class SampleTask:
    folder: Path
    name: str  # the folder, relative to the samples root
    template: dict
    config: dict | None
    evaluation: dict | None
    assets: dict[str, bytes]  # the files the template and evaluation name
    expected: dict[str, dict[str, str]]  # image path (relative to the folder) -> OMRChecker's row

    def zipped(self) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name in self.expected:
                z.write(self.folder / name, name)
        return out.getvalue()


def _nearest(folder: Path, root: Path, name: str) -> Path | None:
    for parent in (folder, *folder.parents):
        if (parent / name).is_file():
            return parent / name
        if parent == root:
            return None
    return None


def _named_files(template: dict, evaluation: dict | None) -> list[str]:
    names = [
        step.get("options", {}).get(key)
        for step in template.get("preProcessors", [])
        for key in ("relativePath", "reference")
    ]
    options = (evaluation or {}).get("options") or {}
    names += [options.get("answer_key_csv_path"), options.get("answer_key_image_path")]
    return [n for n in names if n]


def sample_tasks(root: Path) -> list[SampleTask]:
    tasks = []
    templates = sorted(root.glob("**/template.json"))
    for path in templates:
        folder = path.parent
        deeper = [t.parent for t in templates if t.parent != folder and folder in t.parents]
        template = json.loads(path.read_text())
        config_path = _nearest(folder, root, "config.json")
        evaluation = (
            json.loads((folder / "evaluation.json").read_text())
            if (folder / "evaluation.json").exists()
            else None
        )
        expected = {}
        for listing in sorted(folder.glob("**/expected.csv")):
            if any(d in listing.parents for d in deeper):
                continue
            for row in csv.DictReader(listing.open()):
                expected[str((listing.parent / row["file"]).relative_to(folder))] = row
        tasks.append(
            SampleTask(
                folder,
                str(folder.relative_to(root)),
                template,
                json.loads(config_path.read_text()) if config_path else None,
                evaluation,
                {
                    n: (folder / n).read_bytes()
                    for n in _named_files(template, evaluation)
                    if (folder / n).is_file()
                },
                expected,
            )
        )
    return tasks


@dataclass(frozen=True)
class Disagreement:
    file: str  # relative to the samples root
    column: str
    ours: str | None
    theirs: str
    flags: tuple[str, ...]


def compare_sheet(task: SampleTask, file: str, sheet: dict) -> tuple[int, list[Disagreement]]:
    """(answers compared, disagreements) between OMRChecker's row for `file` and our sheet."""
    differ = []
    row = {k: v for k, v in task.expected[file].items() if k not in FIXED}
    for column, theirs in row.items():
        ours = sheet["answers"].get(column)
        if ours != theirs:
            differ.append(
                Disagreement(
                    f"{task.name}/{file}", column, ours, theirs, tuple(sheet["flags"].get(column, []))
                )
            )
    return len(row), differ


def compare(task: SampleTask, sheets: dict[str, dict]) -> tuple[int, list[Disagreement]]:
    """The same over all of a task's images; `sheets` maps each image's path to our sheet."""
    compared, differ = 0, []
    for file in task.expected:
        count, wrong = compare_sheet(task, file, sheets[file])
        compared, differ = compared + count, differ + wrong
    return compared, differ
