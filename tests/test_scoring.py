"""evaluation.json scoring, checked against OMRChecker's own scores on the shared samples."""

import csv
import json
from pathlib import Path

import pytest

from omr_tus.omr.scoring import AnswerKey, EvaluationError

from .conftest import missing_part, omr_samples


def expected_rows(folder: Path):
    with open(folder / "expected.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "template_dir,images_dir",
    [
        ("sample4", "sample4"),
        ("answer-key/weighted-answers", "answer-key/weighted-answers/images"),
        ("answer-key/using-csv", "answer-key/using-csv"),
    ],
)
def test_scores_equal_omrcheckers(template_dir, images_dir):
    samples = omr_samples() or missing_part("the shared OMR samples are not here (set OMR_TUS_SAMPLES)")
    folder = samples / template_dir
    evaluation = json.loads((folder / "evaluation.json").read_text())
    assets = {p.name: p.read_bytes() for p in folder.glob("*.csv") if p.name != "expected.csv"}
    key = AnswerKey.parse(evaluation, assets)
    for row in expected_rows(samples / images_dir):
        answers = {k: v for k, v in row.items() if k not in ("file", "score")}
        assert key.score(answers) == float(row["score"]), row["file"]


@pytest.mark.parametrize(
    "evaluation,message",
    [
        ({"source_type": "xml"}, "source_type"),
        ({"options": {"questions_in_order": ["q1..2"], "answers_in_order": ["A"]}}, "answers_in_order"),
        ({"options": {"questions_in_order": ["q1"], "answers_in_order": [{"x": 1}]}}, "answers_in_order[0]"),
        (
            {
                "options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]},
                "marking_schemes": {"DEFAULT": {"correct": "three"}},
            },
            "marking_schemes.DEFAULT.correct",
        ),
        ({"source_type": "csv", "options": {"answer_key_csv_path": "key.csv"}}, "answer_key_csv_path"),
    ],
)
def test_bad_evaluations_name_the_key(evaluation, message):
    with pytest.raises(EvaluationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AnswerKey.parse(evaluation)


def test_sections_and_bonus():
    key = AnswerKey.parse(
        {
            "options": {"questions_in_order": ["q1..4"], "answers_in_order": ["A", "B", "C", "D"]},
            "marking_schemes": {
                "DEFAULT": {"correct": 4, "incorrect": -1, "unmarked": 0},
                "BONUS_q4": {"questions": ["q4"], "marking": {"correct": 2, "incorrect": 2, "unmarked": 2}},
            },
        }
    )
    assert key.score({"q1": "A", "q2": "C", "q3": "", "q4": ""}) == 4 - 1 + 0 + 2


def test_csv_key_with_several_and_weighted_answers():
    csv_key = b"q1,C\nq2,\"B,C,BC\"\nq3,\"[['B', 2], ['C', '3/2']]\"\n"
    key = AnswerKey.parse(
        {
            "source_type": "csv",
            "options": {"answer_key_csv_path": "key.csv"},
            "marking_schemes": {"DEFAULT": {"correct": 3, "incorrect": -1, "unmarked": 0}},
        },
        {"key.csv": csv_key},
    )
    assert key.score({"q1": "C", "q2": "BC", "q3": "C"}) == 3 + 3 + 1.5
    assert key.score({"q1": "A", "q2": "A", "q3": "B"}) == -1 - 1 + 2
    with pytest.raises(EvaluationError, match="answer_key_csv_path"):
        AnswerKey.parse(
            {"source_type": "csv", "options": {"answer_key_csv_path": "k.csv"}}, {"k.csv": b"q1,\"[[['B'\"\n"}
        )


@pytest.mark.parametrize(
    "evaluation,message",
    [
        (
            {"options": {"questions_in_order": ["q1..4500000"], "answers_in_order": ["A"]}},
            "options.questions_in_order: names more than 10000 labels",
        ),
        (
            {"options": {"questions_in_order": "q1..3", "answers_in_order": ["A"]}},
            "options.questions_in_order: must be a list of questions",
        ),
        ({"options": ["q1"]}, "options: must be an object"),
        (
            {
                "options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]},
                "marking_schemes": {
                    f"S{i}": {"questions": ["q1"], "marking": {"correct": 1}} for i in range(101)
                },
            },
            "marking_schemes: must be an object of at most 100 sections",
        ),
        (
            {
                "options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]},
                "marking_schemes": {"S": {"questions": ["q1..99999999"], "marking": {"correct": 1}}},
            },
            "marking_schemes.S.questions: names more than 10000 labels",
        ),
        *(
            (
                {
                    "options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]},
                    "marking_schemes": schemes,
                },
                "marking_schemes: must be an object",
            )
            for schemes in (["q1"], "x", 5)
        ),
    ],
)
def test_answer_keys_are_bounded(evaluation, message):
    with pytest.raises(EvaluationError, match=message):
        AnswerKey.parse(evaluation)
