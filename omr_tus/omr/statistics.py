"""Item analysis of a test: per question its difficulty (share of sheets right), its
discrimination (point-biserial correlation of right/wrong with the number right on the other
questions) and how often each choice was marked; for the whole test Kuder–Richardson 20.

Sheets are added one at a time and only sums are kept, so memory does not grow with the number
of sheets: per question the number right and the sum of the totals of the sheets that got it
right; overall the count, the sum of totals and the sum of their squares. The rest score of a
question is the total minus the question, so its sums follow from these (all integers: exact
until the final division)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .scoring import AnswerKey

BLANK = ""
VERDICTS = 1024  # distinct values remembered per question


class ItemAnalysis:
    def __init__(
        self,
        key: AnswerKey,
        empty: str = "",
        labels: dict[str, str] | None = None,
        values: dict[str, tuple[str, ...]] | None = None,
    ):
        """`labels`: lower-case question -> the column as the sheets name it; `values`:
        column -> the choices its bubbles offer (shown with their count even when 0)."""
        self.key = key
        self.empty = empty
        self.questions = list(key.answers)  # the key's order
        self.full = [key.full_marks(q) for q in self.questions]
        labels = labels or {}
        self.labels = [labels.get(q, q) for q in self.questions]
        self.offered = [(values or {}).get(label, ()) for label in self.labels]
        self.choices: list[Counter[str]] = [Counter() for _ in self.labels]
        self.verdicts: list[dict[str, tuple[str, bool]]] = [{} for _ in self.labels]
        self.sheets = 0
        self.total = 0  # sum of number-right totals
        self.total_squares = 0
        self.right = [0] * len(self.questions)
        self.right_total = [0] * len(self.questions)  # sum of totals of the sheets right on it

    def add(self, marked: dict[str, str]) -> None:
        """One sheet's answers (corrections applied); a question it lacks counts as blank."""
        lowered = {column.lower(): value for column, value in marked.items()}
        right = []
        for j, question in enumerate(self.questions):
            value = lowered.get(question, self.empty)
            seen = self.verdicts[j].get(value) or self._verdict(j, value)
            self.choices[j][seen[0]] += 1
            if seen[1]:
                right.append(j)
        total = len(right)
        self.sheets += 1
        self.total += total
        self.total_squares += total * total
        for j in right:
            self.right[j] += 1
            self.right_total[j] += total

    def _verdict(self, j: int, value: str) -> tuple[str, bool]:
        """(the choice `value` counts as, whether it earns full marks), remembered: a question
        sees few distinct values (the first VERDICTS of them; more are judged each time)."""
        verdict = (
            BLANK if value in (BLANK, self.empty) else value,
            self.key.marks(self.questions[j], value, self.empty) >= self.full[j],
        )
        if len(self.verdicts[j]) < VERDICTS:
            self.verdicts[j][value] = verdict
        return verdict

    def result(self) -> dict[str, Any]:
        n = self.sheets
        return {
            "sheets": n,
            "kr20": self._kr20(),
            "questions": [
                {
                    "question": label,
                    "difficulty": self.right[j] / n if n else None,
                    "discrimination": self._point_biserial(j),
                    "choices": _ordered(self.choices[j], self.offered[j]),
                }
                for j, label in enumerate(self.labels)
            ],
        }

    def _point_biserial(self, j: int) -> float | None:
        """Pearson's r of x (1 if right on j) with r = total - x, from
        n·Σxr − Σx·Σr over √((n·Σx² − (Σx)²)(n·Σr² − (Σr)²)), with x² = x."""
        n, sx, sxt = self.sheets, self.right[j], self.right_total[j]
        sr = self.total - sx
        srr = self.total_squares - 2 * sxt + sx
        sxr = sxt - sx
        var_x = n * sx - sx * sx
        var_r = n * srr - sr * sr
        if var_x <= 0 or var_r <= 0:
            return None
        return (n * sxr - sx * sr) / math.sqrt(var_x * var_r)

    def _kr20(self) -> float | None:
        """k/(k−1)·(1 − Σpq/σ²) with σ² the population variance of the totals; as integers,
        Σpq/σ² = Σ right(n − right) / (n·Σt² − (Σt)²)."""
        k, n = len(self.questions), self.sheets
        spread = n * self.total_squares - self.total * self.total
        if k < 2 or n == 0 or spread <= 0:
            return None
        pq = sum(r * (n - r) for r in self.right)
        return k / (k - 1) * (1 - pq / spread)


def _ordered(counts: Counter, offered: tuple[str, ...]) -> dict[str, int]:
    """The choices the bubbles offer in their order (0 for one nobody marked), then the other
    values seen (multiple marks such as "AC") sorted, blanks ("") last."""
    others = sorted(v for v in counts if v != BLANK and v not in offered)
    return {**{v: counts[v] for v in (*offered, *others)}, BLANK: counts[BLANK]}
