"""Rescoring: after a task's answer key (or template) changed, workers score its sheets again
from their stored answers, corrections applied, a bounded chunk of sheets per round and the
arithmetic in a thread. What is left is whatever db.scores finds scored under an older key,
so a worker that stops mid-way leaves nothing to recover: its chunk's lease runs out and
another worker scores it."""

from __future__ import annotations

import asyncio
import logging

from ..db.repo import Repo
from ..db.scores import Scores
from .tasks import TaskSpec, load_task

log = logging.getLogger("omr_tus.rescore")
CHUNK = 500  # sheets per round: with 200 questions, 100,000 answers in memory at most


class Rescorer:
    def __init__(self, repo: Repo, name: str, lease: float, chunk: int = CHUNK):
        self.repo = repo
        self.scores = Scores(repo.engine)
        self.name = name
        self.lease = lease
        self.chunk = chunk
        self._spec: tuple[str, int, TaskSpec | None] | None = None  # the last task parsed

    async def run_once(self) -> int:
        """Rescores one chunk of sheets; returns how many (0: none waits)."""
        claim = await self.scores.claim_rescoring(self.name, self.chunk, self.lease)
        if claim is None:
            return 0
        task_id, ids = claim
        version, spec = await self._task(task_id)
        marked = await self.scores.marked(ids)
        scored = await asyncio.to_thread(_score, spec, [(i, marked.get(i, {})) for i in ids], version)
        await self.scores.save_scores(self.name, scored)
        return len(ids)

    async def _task(self, task_id: str) -> tuple[int, TaskSpec | None]:
        """The task's current key, parsed again only when its version moved on. A stored key
        that no longer parses (or a task gone) scores nothing: None, under the current version."""
        from ..omr.errors import TemplateError
        from ..omr.scoring import EvaluationError

        row = await self.repo.task(task_id)
        version = row.key_version if row is not None else 0
        if self._spec is not None and self._spec[:2] == (task_id, version):
            return version, self._spec[2]
        try:
            spec = await load_task(self.repo, task_id)
        except (TemplateError, EvaluationError):
            log.exception("Task %s: its stored template or answer key no longer parses", task_id)
            spec = None
        if spec is not None:
            version = spec.version  # what the key was parsed from (it may have moved on again)
        self._spec = (task_id, version, spec)
        return version, spec


def _score(spec: TaskSpec | None, sheets: list[tuple[int, dict[str, str]]], version: int):
    """(sheet id, score, version) for save_scores; no key, no score."""
    return [(sheet_id, spec.score(marked) if spec else None, version) for sheet_id, marked in sheets]
