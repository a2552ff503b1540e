"""OMRChecker's `answer_key_image_path`: an answer key given as a filled-in sheet, read once
with the task's own template when the task is registered, and stored as answers in order.

As in OMRChecker, the image is used when the evaluation's CSV (`answer_key_csv_path`) is not
there; `questions_in_order` picks the questions (each must be answered), and without it every
question answered on the key sheet is taken, in sorted order. Unlike OMRChecker, a key is a
grade for every sheet of the exam, so it is refused unless it reads confidently: read on the
template cut down to the key's questions (a roll number left blank on the key sheet is no
doubt about the key), the sheet must be `ok` and no question blank, multiple or ambiguous.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .reader import SheetResult, read_sheet
from .scoring import CSV_SOURCES, EvaluationError, expand
from .template import Template

KEY = "options.answer_key_image_path"


def key_image_name(evaluation: dict | None, assets: dict[str, bytes]) -> str | None:
    """The key image to read, or None when the key is not to come from an image."""
    options = (evaluation or {}).get("options") or {}
    name = options.get("answer_key_image_path")
    if (evaluation or {}).get("source_type") not in CSV_SOURCES or not name:
        return None
    if options.get("answer_key_csv_path") in assets:
        return None  # OMRChecker reads the CSV when it is there
    if not isinstance(name, str) or name not in assets:
        raise EvaluationError(
            f"{KEY}: the file {name!r} was not sent with the task (send it as an 'asset' "
            "file field of a multipart POST /api/tasks)"
        )
    return name


def key_from_image(evaluation: dict, template: Template, image: np.ndarray, name: str) -> dict:
    """The evaluation with its key read from `image`: source_type custom, questions and
    answers in order (the image's name kept in the options, for the record). Raises
    EvaluationError naming every question that does not read confidently."""
    options = evaluation.get("options") or {}
    if "questions_in_order" in options:
        questions = expand(options["questions_in_order"], "options.questions_in_order")
    else:
        first = _read(image, template, name)
        questions = sorted(c for c in first.answers if "blank" not in first.flags.get(c, ()))
    unknown = [q for q in questions if q not in template.columns]
    if unknown or not questions:
        raise EvaluationError(
            f"{KEY}: the key image {name!r} cannot give the key: "
            + (
                f"{', '.join(unknown)} not among the template's columns"
                if unknown
                else "no question is answered on it"
            )
        )
    result = _read(image, _only(template, questions), name)
    problems = [
        f"{q} {' and '.join(result.flags[q])} ({result.answers[q]!r})" for q in questions if result.flags[q]
    ]
    if result.status != "ok":
        problems.append(f"the sheet needs review: {result.error}")
    if problems:
        raise EvaluationError(
            f"{KEY}: the key image {name!r} does not read confidently: " + "; ".join(problems)
        )
    kept = {k: v for k, v in options.items() if k not in ("answer_key_csv_path", "questions_in_order")}
    return {
        **evaluation,
        "source_type": "custom",
        "options": {
            **kept,
            "questions_in_order": questions,
            "answers_in_order": [result.answers[q] for q in questions],
        },
    }


def _read(image: np.ndarray, template: Template, name: str) -> SheetResult:
    result = read_sheet(image, template, qr_expected=False)
    if result.status == "failed":
        raise EvaluationError(f"{KEY}: the key image {name!r} could not be read: {result.error}")
    return result


def _only(template: Template, columns: list[str]) -> Template:
    """The template cut down to `columns` and the fields they are made of."""
    parts = {p for c in columns for p in template.custom_labels.get(c, (c,))}
    return dataclasses.replace(
        template,
        fields=tuple(f for f in template.fields if f.label in parts),
        columns=tuple(columns),
        custom_labels={c: template.custom_labels[c] for c in columns if c in template.custom_labels},
    )
