"""Template parsing: OMRChecker geometry, our markers/qr keys, and errors that name the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from omr_tus.omr.reader import read_answers
from omr_tus.omr.render import render_sheet
from omr_tus.omr.template import Bubble, Template, TemplateError

from . import samples
from .conftest import omr_samples

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = omr_samples() or Path("/nonexistent")
EXAMPLES = sorted((ROOT / "config" / "templates").glob("*.json"))

BASE = {
    "pageDimensions": [1000, 1400],
    "bubbleDimensions": [30, 30],
    "markers": {
        "dictionary": "DICT_4X4_50",
        "size": 60,
        "positions": {"0": [20, 20], "1": [920, 20], "2": [20, 1320], "3": [920, 1320]},
    },
    "qr": {"origin": [700, 100], "size": 200},
    "fieldBlocks": {
        "Id": {
            "fieldType": "QTYPE_INT",
            "fieldLabels": ["id1..3"],
            "origin": [100, 100],
            "bubblesGap": 40,
            "labelsGap": 45,
        },
        "Mcq": {
            "fieldType": "QTYPE_MCQ4",
            "fieldLabels": ["q1..10"],
            "origin": [100, 600],
            "bubblesGap": 50,
            "labelsGap": 60,
            "emptyValue": "-",
        },
        "Custom": {
            "bubbleValues": ["Y", "N"],
            "direction": "vertical",
            "fieldLabels": ["q5_1..2"],
            "origin": [500, 600],
            "bubblesGap": 40,
            "labelsGap": 45,
            "bubbleDimensions": [20, 24],
        },
    },
    "customLabels": {"student_id": ["id1..3"]},
}


def parse(**changes) -> Template:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return Template.parse(data)


def test_geometry_follows_omrchecker():
    t = parse()
    fields = t.field_map()
    # QTYPE_MCQ4: A-D along x by bubblesGap; the next field one labelsGap lower
    assert fields["q1"].bubbles[1] == Bubble("B", 150, 600, 30, 30)
    assert fields["q2"].bubbles[0] == Bubble("A", 100, 660, 30, 30)
    # QTYPE_INT: 0-9 down y; the next digit one labelsGap to the right
    assert [b.value for b in fields["id1"].bubbles] == list("0123456789")
    assert fields["id1"].bubbles[9] == Bubble("9", 100, 460, 30, 30)
    assert fields["id2"].bubbles[0] == Bubble("0", 145, 100, 30, 30)
    # explicit bubbleValues + direction, "q5_1..2" names, a per-block bubbleDimensions
    assert fields["q5_2"].bubbles[1] == Bubble("N", 545, 640, 20, 24)
    assert fields["q3"].empty_value == "-" and fields["id1"].empty_value == ""


def test_columns_custom_labels_and_extras():
    t = parse()
    assert t.custom_labels == {"student_id": ("id1", "id2", "id3")}
    # no outputColumns: OMRChecker's natural order, custom labels replacing their parts
    assert t.columns == (
        "q1",
        "q2",
        "q3",
        "q4",
        "q5",
        "q5_1",
        "q5_2",
        "q6",
        "q7",
        "q8",
        "q9",
        "q10",
        "student_id",
    )
    assert t.extras == {} and t.alignment is None
    assert t.markers.positions[3] == (920, 1320) and t.qr.size == 200
    assert parse(outputColumns=["student_id", "q1..3"]).columns == ("student_id", "q1", "q2", "q3")


def test_int_from_1_and_float_gaps_round():
    t = parse(
        fieldBlocks={
            "B": {
                "fieldType": "QTYPE_INT_FROM_1",
                "fieldLabels": ["d1"],
                "origin": [10.4, 20],
                "bubblesGap": 10.5,
                "labelsGap": 0,
            }
        },
        customLabels={},
    )
    bubbles = t.fields[0].bubbles
    assert [b.value for b in bubbles] == list("1234567890")
    assert (bubbles[0].x, bubbles[1].y, bubbles[2].y) == (10, 30, 41)


def test_right_to_left_types_print_a_rightmost():
    t = parse(
        fieldBlocks={
            "R": {
                "fieldType": "QTYPE_MCQ5_RTL",
                "fieldLabels": ["q1"],
                "origin": [10, 20],
                "bubblesGap": 40,
                "labelsGap": 0,
            }
        },
        customLabels={},
    )
    assert [(b.value, b.x) for b in t.fields[0].bubbles] == [
        ("E", 10),
        ("D", 50),
        ("C", 90),
        ("B", 130),
        ("A", 170),
    ]
    rendered = render_sheet(t, "11600111", "1", {"q1": "AC"})
    result = read_answers(rendered, t)
    assert result[0] == {"q1": "CA"}  # as OMRChecker writes it: in bubble order


def block(**changes):
    b = copy.deepcopy(BASE["fieldBlocks"]["Mcq"])
    b.update(changes)
    return {"fieldBlocks": {"Mcq": b}, "customLabels": {}}


BAD = [
    (dict(pageDimensions=[100]), "pageDimensions"),
    (dict(pageDimensions="A4"), "pageDimensions"),
    (dict(pageDimensions=[100000, 1400]), "pageDimensions"),
    (dict(fieldBlocks={}), "fieldBlocks"),
    (dict(emptyValue=0), "emptyValue"),
    (block(origin=[10, -5]), "fieldBlocks.Mcq.origin"),
    (block(origin=None), "fieldBlocks.Mcq.origin"),
    (block(fieldType="QTYPE_MCQ9"), "fieldBlocks.Mcq.fieldType"),
    (block(fieldType=None, bubbleValues=[]), "fieldBlocks.Mcq.fieldType"),
    (block(direction="diagonal"), "fieldBlocks.Mcq.direction"),
    (block(bubblesGap="50"), "fieldBlocks.Mcq.bubblesGap"),
    (block(labelsGap=-1), "fieldBlocks.Mcq.labelsGap"),
    (block(fieldLabels=[]), "fieldBlocks.Mcq.fieldLabels"),
    (block(fieldLabels=["q9..2"]), "fieldBlocks.Mcq.fieldLabels"),
    (block(fieldLabels=["q1..3", "q2"]), "fieldBlocks.Mcq.fieldLabels"),
    (block(fieldLabels=["q1..4500000"]), "fieldBlocks.Mcq.fieldLabels"),  # refused before it is built
    (block(fieldLabels=["q" * 65]), "fieldBlocks.Mcq.fieldLabels"),  # longer than an answer's column
    (dict(customLabels={"s" * 65: ["id1"]}), "customLabels." + "s" * 65),
    (dict(outputColumns=["id1..20000"]), "outputColumns"),
    (block(emptyValue=None), "fieldBlocks.Mcq.emptyValue"),
    (block(bubbleDimensions=[0, 30]), "fieldBlocks.Mcq.bubbleDimensions"),
    (block(origin=[900, 600]), "fieldBlocks.Mcq"),
    (
        dict(fieldBlocks={"Mcq": BASE["fieldBlocks"]["Mcq"], "Again": BASE["fieldBlocks"]["Mcq"]}),
        "fieldBlocks.Again.fieldLabels",
    ),
    (dict(customLabels={"student_id": ["id1..4"]}), "customLabels.student_id"),
    (dict(customLabels={"a": ["id1"], "b": ["id1"]}), "customLabels.b"),
    (dict(customLabels={"q1": ["id1"]}), "customLabels.q1"),
    (dict(customLabels=["id1"]), "customLabels"),
    (dict(outputColumns=["q1..11"]), "outputColumns"),
    (dict(outputColumns=["id1", "nope"]), "outputColumns"),
    (dict(markers=None), "markers"),
    (dict(markers={**BASE["markers"], "dictionary": "DICT_9X9_1"}), "markers.dictionary"),
    (dict(markers={**BASE["markers"], "dictionary": "getPredefinedDictionary"}), "markers.dictionary"),
    (dict(markers={**BASE["markers"], "size": 8}), "markers.size"),
    (dict(markers={**BASE["markers"], "positions": {"0": [0, 0], "1": [100, 0]}}), "markers.positions"),
    (
        dict(markers={**BASE["markers"], "positions": {"0": [0, 0], "1": [100, 0], "x": [0, 100]}}),
        "markers.positions.x",
    ),
    (
        dict(markers={**BASE["markers"], "positions": {"0": [0, 0], "1": [100, 0], "50": [0, 100]}}),
        "markers.positions.50",
    ),
    (
        dict(markers={**BASE["markers"], "positions": {"0": [0, 0], "00": [100, 0], "2": [0, 100]}}),
        "markers.positions.00",
    ),
    (
        dict(markers={**BASE["markers"], "positions": {"0": [0, 0], "1": [100, 0], "2": [980, 100]}}),
        "markers.positions.2",
    ),
    (dict(qr={"origin": [900, 100], "size": 200}), "qr"),
    (dict(qr={"origin": [100], "size": 200}), "qr.origin"),
    (dict(qr={"origin": [100, 100], "size": 12.5}), "qr.size"),
    (dict(preProcessors=[{"name": "CropPage"}]), "preProcessors"),  # with ArUco markers
]


@pytest.mark.parametrize("changes,key", BAD, ids=[k for _, k in BAD])
def test_bad_template_names_the_key(changes, key):
    with pytest.raises(TemplateError) as err:
        parse(**changes)
    assert err.value.key == key
    assert str(err.value).startswith(key + ":")


def test_bubble_dimensions_needed_somewhere():
    data = copy.deepcopy(BASE)
    del data["bubbleDimensions"]
    with pytest.raises(TemplateError, match=r"^fieldBlocks\.Id\.bubbleDimensions"):
        Template.parse(data)


def sample_tasks():
    return samples.sample_tasks(SAMPLES) if SAMPLES.is_dir() else []


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the OMRChecker samples are not on this machine")
@pytest.mark.parametrize("task", sample_tasks(), ids=lambda t: t.name)
def test_omrchecker_samples_load_unmodified(task):
    t = Template.parse(task.template, task.config, task.assets)
    steps = [type(step).__name__ for step in t.alignment.steps]
    assert steps == [p["name"] for p in task.template["preProcessors"]]
    for row in task.expected.values():  # OMRChecker's own column order
        assert t.columns == tuple(row)[2:]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_templates(path):
    t = Template.parse(json.loads(path.read_text()))
    assert t.page == (1654, 2339) and t.markers and t.qr
    assert "student_id" in t.columns and len(t.custom_labels["student_id"]) >= 6
    assert len(EXAMPLES) == 2


def test_bubbles_are_counted_before_they_are_built():
    with pytest.raises(TemplateError, match="fieldBlocks.Mcq: has more than 100000 bubbles"):
        parse(**block(fieldLabels=["q1..400"], bubbleValues=[str(n) for n in range(300)]))
