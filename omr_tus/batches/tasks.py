"""A task as the pipeline uses it: its template (with alignment steps) and answer key, parsed
from what is stored. Shared by the workers and the review API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..db.repo import Repo


@dataclass(frozen=True)
class TaskSpec:
    template: Any  # omr.template.Template (imported lazily: OpenCV loads only where sheets are read)
    key: Any | None  # omr.scoring.AnswerKey
    version: int = 0  # the task's key_version this was parsed from: scores say which key they used

    def score(self, answers: dict[str, str]) -> float | None:
        return self.key.score(answers, self.template.empty_value) if self.key is not None else None


async def load_task(repo: Repo, task_id: str) -> TaskSpec | None:
    """The task, or None if there is none; raises TemplateError/EvaluationError if what is
    stored no longer parses."""
    from ..omr.scoring import AnswerKey
    from ..omr.template import Template

    row = await repo.task(task_id)
    if row is None:
        return None
    assets = await repo.task_assets(task_id)
    template = await asyncio.to_thread(Template.parse, row.template, row.config, assets)
    key = AnswerKey.parse(row.answer_key, assets) if row.answer_key else None
    return TaskSpec(template, key, row.key_version)
