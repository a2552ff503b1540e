"""Scores from an OMRChecker evaluation.json: answers in order or from a CSV key, several
accepted answers, weighted answers, marking schemes with sections (BONUS_ ones included)."""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
from fractions import Fraction
from typing import Any

from .labels import expand_ranges

MAX_SECTIONS = 100  # marking_schemes sections, each a list of questions


CSV_SOURCES = ("csv", "image_and_csv")  # the second is how older OMRChecker samples name a CSV key


class EvaluationError(ValueError):
    """A bad evaluation.json; the message names the key."""


def expand(labels: Any, key: str) -> list[str]:
    """OMRChecker label ranges: "q1..3" -> q1, q2, q3 (and "q3..1" -> q3, q2, q1), bounded."""
    if not isinstance(labels, list):
        raise EvaluationError(f"{key}: must be a list of questions")
    try:
        return expand_ranges([str(label) for label in labels], backwards=True)
    except ValueError as exc:
        raise EvaluationError(f"{key}: {exc}") from None


def number(value: Any, key: str) -> float:
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise EvaluationError(f"{key}: {value!r} is not a number (fractions like 3/2 are allowed)") from None


@dataclasses.dataclass(frozen=True)
class Marking:
    correct: float
    incorrect: float
    unmarked: float


@dataclasses.dataclass(frozen=True)
class AnswerKey:
    answers: dict[str, Any]  # lower-case question -> "B" | ["B", "C"] | [["B", 2.0], ["C", 1.5]]
    markings: dict[str, Marking]  # lower-case question -> its section's marking

    @classmethod
    def parse(cls, evaluation: dict, assets: dict[str, bytes] | None = None) -> AnswerKey:
        options = evaluation.get("options") or {}
        if not isinstance(options, dict):
            raise EvaluationError("options: must be an object")
        source = evaluation.get("source_type", "custom")
        if source in CSV_SOURCES:
            name = options.get("answer_key_csv_path")
            if not name or assets is None or name not in assets:
                raise EvaluationError(
                    f"options.answer_key_csv_path: the file {name!r} was not sent with the task"
                )
            rows = [r for r in csv.reader(io.StringIO(assets[name].decode("utf-8-sig"))) if r]
            questions, answers = [r[0].strip() for r in rows], [_csv_answer(r[1:]) for r in rows]
        elif source == "custom":
            questions = expand(options.get("questions_in_order") or [], "options.questions_in_order")
            answers = list(options.get("answers_in_order") or [])
            if len(questions) != len(answers):
                raise EvaluationError(
                    f"options.answers_in_order: {len(answers)} answers for "
                    f"{len(questions)} questions_in_order"
                )
        else:
            raise EvaluationError(f"source_type: {source!r} is not 'custom' or 'csv'")
        key = {
            q.lower(): _answer(a, f"options.answers_in_order[{i}]")
            for i, (q, a) in enumerate(zip(questions, answers))
        }
        return cls(key, _markings(evaluation.get("marking_schemes") or {}, key))

    def score(self, marked: dict[str, str], empty: str = "") -> float:
        """Sum over the key's questions; a question missing from the sheet counts as unmarked."""
        lowered = {k.lower(): v for k, v in marked.items()}
        return sum((self.marks(q, lowered.get(q, empty), empty) for q in self.answers), 0.0)

    def marks(self, question: str, value: str, empty: str = "") -> float:
        """What `value` earns on `question` (lower-case, one of the key's)."""
        expected, marking = self.answers[question], self.markings[question]
        if value in ("", empty):
            return marking.unmarked
        if isinstance(expected, str):
            return marking.correct if value == expected else marking.incorrect
        if expected and isinstance(expected[0], list):  # weighted: each answer its own mark
            return dict((a, s) for a, s in expected).get(value, marking.incorrect)
        return marking.correct if value in expected else marking.incorrect

    def full_marks(self, question: str) -> float:
        """The most an answer can earn on `question`: its section's `correct`, or for weighted
        answers the highest weight (item analysis counts an answer that earns it as right)."""
        expected, marking = self.answers[question], self.markings[question]
        if expected and isinstance(expected, list) and isinstance(expected[0], list):
            return max(s for _, s in expected)
        return marking.correct


def _csv_answer(cells: list[str]) -> Any:
    """OMRChecker's answer cell: `B`, `B,C,BC` (any of these), or `[['B', 2], ['C', '3/2']]`
    (weighted), read as a literal, never evaluated."""
    text = ",".join(cells).strip()
    if text.startswith("["):
        try:
            if len(text) > 1000:
                raise ValueError
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            raise EvaluationError(f"answer_key_csv_path: {text!r} is not a list of [answer, score]") from None
    values = [c.strip() for c in text.split(",") if c.strip()]
    return values[0] if len(values) == 1 else values


def _answer(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, list) and len(v) == 2 for v in value):
        return [[str(a), number(s, key)] for a, s in value]
    raise EvaluationError(
        f"{key}: {value!r} is not an answer, a list of answers or a list of [answer, score]"
    )


def _markings(schemes: dict, key: dict[str, Any]) -> dict[str, Marking]:
    if not isinstance(schemes, dict) or len(schemes) > MAX_SECTIONS:
        raise EvaluationError(f"marking_schemes: must be an object of at most {MAX_SECTIONS} sections")
    default = _marking(
        schemes.get("DEFAULT", {"correct": 1, "incorrect": 0, "unmarked": 0}), "marking_schemes.DEFAULT"
    )
    markings = {q: default for q in key}
    for name, section in schemes.items():
        if name == "DEFAULT":
            continue
        if not isinstance(section, dict) or "questions" not in section or "marking" not in section:
            raise EvaluationError(f"marking_schemes.{name}: a section needs 'questions' and 'marking'")
        marking = _marking(section["marking"], f"marking_schemes.{name}.marking")
        for question in expand(section["questions"], f"marking_schemes.{name}.questions"):
            markings[question.lower()] = marking
    return markings


def _marking(raw: Any, key: str) -> Marking:
    if not isinstance(raw, dict):
        raise EvaluationError(f"{key}: must be an object with correct, incorrect and unmarked")
    return Marking(
        *(number(raw.get(part, 0), f"{key}.{part}") for part in ("correct", "incorrect", "unmarked"))
    )
