"""OMRChecker label ranges ("q1..3" -> q1, q2, q3), shared by templates and answer keys and
never built past a limit: a 269-byte "q1..4500000" is refused at once, not expanded into
gigabytes."""

from __future__ import annotations

import re
from collections.abc import Iterable

RANGE = re.compile(r"^(.*?)(\d{1,9})\.{2,3}(\d{1,9})$")  # the prefix may hold digits
MAX_LABELS = 10_000  # labels one list may name, ranges expanded


def expand_ranges(items: Iterable[str], backwards: bool = False) -> list[str]:
    """Raises ValueError naming the problem; `backwards` allows "q3..1" (answer keys do)."""
    out: list[str] = []
    for item in items:
        match = RANGE.match(item)
        start, end = (int(match.group(2)), int(match.group(3))) if match else (1, 1)
        if end < start and not backwards:
            raise ValueError(f"range '{item}' runs backwards")
        if len(out) + abs(end - start) + 1 > MAX_LABELS:
            raise ValueError(f"names more than {MAX_LABELS} labels")
        if match is None:
            out.append(item)
            continue
        step = 1 if end >= start else -1
        out.extend(f"{match.group(1)}{n}" for n in range(start, end + step, step))
    return out
