"""The worker: claims batches to list their pages and sheets to read, under leases, so any
number of worker processes on any number of machines share the work, and the sheets of a
worker that died are claimed again when its lease runs out. CPU work runs in a thread of
the worker process, never on a server's event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable
from pathlib import PurePosixPath

from sqlalchemy import Row

from ..config import Settings
from ..db.repo import Repo
from ..store.files import CompletedFiles
from .ingest import Limits, Listing, PageError, PageReader, list_pages
from .rescore import Rescorer
from .tasks import TaskSpec, load_task
from .wakeup import Wakeup

log = logging.getLogger("omr_tus.worker")
MAX_ATTEMPTS = 3
DEFAULT_PAGE_WIDTH = 1654  # A4 at 200 dpi: how wide a PDF page is rendered before its template is known
TEMPLATE_CACHE_SECONDS = 30.0
STUDENT_CHARS, VALUE_CHARS = 32, 64  # what sheets.student_id and answers.value hold
READERS_KEPT = 2  # batch files kept open between claims: a worker's turns rarely come back to one soon


class Worker:
    def __init__(
        self,
        repo: Repo,
        settings: Settings,
        files: CompletedFiles,
        *,
        name: str | None = None,
        lease: float = 120.0,
        sheets_per_claim: int = 4,
        limits: Limits = Limits(),
        turn_seconds: float = 2.0,
    ):
        self.repo = repo
        self.settings = settings
        self.files = files
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease = lease
        self.sheets_per_claim = sheets_per_claim
        self.limits = limits
        # A turn: the worker keeps claiming the batch it is in for turn_seconds, so its file is
        # opened once per turn rather than once per claim when many batches take turns; another
        # user's batch waits one turn at most.
        self.turn_seconds = turn_seconds
        self._turn: tuple[str, float] | None = None  # (batch id, monotonic end)
        self._tasks: dict[str, tuple[float, TaskSpec | None]] = {}
        self._readers: dict[str, PageReader] = {}  # by upload id, least recently used first
        self.rescorer = Rescorer(repo, self.name, lease)

    async def run(self, stop: asyncio.Event, idle: float = 0.5, listening_idle: float | None = None) -> None:
        """Works until `stop` is set. With nothing to do it waits for a notification of new work
        (PostgreSQL), checking every `listening_idle` seconds anyway (expired leases: by default
        10 s, or half a lease if that is shorter), or polls every `idle` seconds."""
        if listening_idle is None:
            listening_idle = min(10.0, self.lease / 2)
        async with Wakeup(self.repo.engine) as wakeup:
            try:
                while not stop.is_set():
                    try:
                        done = await self.run_once()
                    except Exception:
                        log.exception("worker %s: a round failed; retrying", self.name)
                        done = 0
                    if not done:
                        await wakeup.wait(stop, listening_idle if wakeup.listening else idle)
            finally:
                self.close_files()

    async def run_once(self) -> int:
        """One round: list the pages of one new batch, read a few sheets of the batch whose
        turn it is, rescore a chunk of sheets of a task whose key changed. Returns how much was
        done (0: nothing to do; open files are closed)."""
        done = 0
        self._drop_removed()
        batch = await self.repo.claim_batch(self.name, self.lease)
        if batch is not None:
            await self._ingest(batch)
            done += 1
        claimed = await self.repo.claim_sheets(
            self.name, self.sheets_per_claim, self.lease, self._turn_batch()
        )
        batch = await self.repo.batch(claimed[0].batch_id) if claimed else None
        if batch is not None and batch.id != self._turn_batch():
            self._turn = (batch.id, time.monotonic() + self.turn_seconds)
        if batch is not None:  # (None: deleted since the claim)
            for sheet in claimed:
                await self._process(batch, sheet)
                done += 1
        done += await self.rescorer.run_once()
        if not done:
            self.close_files()
        return done

    def _turn_batch(self) -> str | None:
        """The batch whose turn this worker is in, if the turn has not ended."""
        if self._turn is not None and time.monotonic() < self._turn[1]:
            return self._turn[0]
        return None

    def _drop_removed(self) -> None:
        """Closes the files of batches deleted meanwhile: an open file keeps its disk space."""
        for upload_id, reader in list(self._readers.items()):
            if not reader.path.exists():
                self._readers.pop(upload_id).close()

    def close_files(self) -> None:
        while self._readers:
            self._readers.pop(next(iter(self._readers))).close()

    async def _ingest(self, batch: Row) -> None:
        path = await self.files.local_path(batch.upload_id)
        listing = await self._holding(
            batch.id, asyncio.to_thread(list_pages, path, batch.filename or "", self.limits)
        )
        if not await self.repo.add_sheets(batch.id, self.name, listing):
            log.warning("Batch %s: listed, but its lease was lost; another worker lists it", batch.id)
            return
        log.info(
            "Batch %s: %d sheets, %d entries skipped%s",
            batch.id,
            len(listing.pages),
            listing.skipped_count,
            f", failed: {listing.error}" if listing.error else "",
        )

    async def _holding(self, batch_id: str, work: Awaitable[Listing]) -> Listing:
        """Awaits `work`, renewing the batch's lease every third of it: listing a large file may
        take longer than one lease, and no other worker must list it meanwhile."""
        task = asyncio.ensure_future(work)
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.lease / 3)
            if done:
                return task.result()
            await self.repo.renew_batch_lease(batch_id, self.name, self.lease)

    async def _page_reader(self, upload_id: str) -> PageReader:
        """The batch's file, opened once for a run of its sheets (see PageReader)."""
        reader = self._readers.pop(upload_id, None)
        if reader is None:
            path = await self.files.local_path(upload_id)
            reader = await asyncio.to_thread(PageReader, path, self.limits)
        self._readers[upload_id] = reader
        while len(self._readers) > READERS_KEPT:
            self._readers.pop(next(iter(self._readers))).close()
        return reader

    async def _process(self, batch: Row, sheet: Row) -> None:
        started = time.monotonic()
        if sheet.attempts > MAX_ATTEMPTS:
            values, rows = _failed(
                f"not read after {MAX_ATTEMPTS} attempts (a worker stopped while reading it)"
            )
        else:
            try:
                values, rows = await self._read(batch, sheet)
            except PageError as exc:
                values, rows = _failed(str(exc))
            except Exception as exc:  # one bad sheet must never stop the batch or the worker
                log.exception("Sheet %s#%d of batch %s", sheet.source, sheet.page, batch.id)
                values, rows = _failed(f"internal error while reading the sheet: {type(exc).__name__}")
        if await self.repo.save_sheet(sheet.id, self.name, values, rows):
            await self.repo.update_progress(batch.id)
            log.debug(
                "Sheet %s#%d: %s in %.0f ms",
                sheet.source,
                sheet.page,
                values["status"],
                1000 * (time.monotonic() - started),
            )

    async def _read(self, batch: Row, sheet: Row) -> tuple[dict, list[dict]]:
        from ..omr.reader import read_sheet

        task_id = batch.task_id
        spec = await self._task(task_id) if task_id else None
        width = spec.template.page[0] if spec is not None else DEFAULT_PAGE_WIDTH
        reader = await self._page_reader(batch.upload_id)
        image = await asyncio.to_thread(reader.load, sheet.source, sheet.page, width)
        qr = None
        if batch.upload_type == "zip_with_qr":
            qr = await asyncio.to_thread(_find_qr, image)
            if qr is not None:
                task_id = qr[0]
                spec = await self._task(task_id)
        if task_id is None:
            return _failed("no QR code found, and the upload names no task_id")
        if spec is None:
            return _failed(f"task {task_id} has no registered template")
        # only zip_with_qr sheets must carry a code; elsewhere a blank qr box is expected
        result = await asyncio.to_thread(read_sheet, image, spec.template, batch.upload_type == "zip_with_qr")
        student = (qr[1] if qr else None) or result.student_id or _student_from_name(sheet.source)
        if reason := _unstorable(student, result.answers):
            return _failed(reason)
        status = result.status
        if qr and result.answers.get("student_id") and result.answers["student_id"] != qr[1]:
            status = "needs_review" if status == "ok" else status  # the QR wins, a person looks
        if batch.upload_type == "zip_with_qr" and qr is None and status == "ok":
            status = "needs_review"
        error = result.error
        if result.task_id and result.task_id != task_id:  # a sheet of another task in this upload
            status = "needs_review" if status == "ok" else status
            error = "; ".join(filter(None, (error, f"its QR code names task {result.task_id}")))
        # corrections count in the score only; without an answer key there is none to compute
        fixes = {c.column: c.value for c in await self.repo.corrections_of([sheet.id])} if spec.key else {}
        values = dict(
            status=status,
            task_id=task_id,
            student_id=student,
            error=error,
            alignment_error=result.alignment_error,
            score=spec.score({**result.answers, **fixes}),
            key_version=spec.version,  # a key changed since: the sheet is rescored (batches.rescore)
        )
        rows = [
            dict(
                column=column,
                value=value,
                flags=",".join(result.flags.get(column, [])),
                confidence=float(result.confidence.get(column, 0.0)),
                position=position,
            )
            for position, (column, value) in enumerate(result.answers.items())
        ]
        return values, rows

    async def _task(self, task_id: str) -> TaskSpec | None:
        """The task's template and answer key, cached for a while: a batch has many sheets."""
        from ..omr.errors import TemplateError
        from ..omr.scoring import EvaluationError

        cached = self._tasks.get(task_id)
        if cached and time.monotonic() - cached[0] < TEMPLATE_CACHE_SECONDS:
            return cached[1]
        try:
            spec = await load_task(self.repo, task_id)
        except (TemplateError, EvaluationError):
            log.exception("Task %s: its stored template or answer key no longer parses", task_id)
            spec = None
        self._tasks[task_id] = (time.monotonic(), spec)
        return spec


def _unstorable(student: str, answers: dict[str, str]) -> str | None:
    """Why a reading cannot be stored as read (None: it can). A value the database would have
    to cut is no result; on PostgreSQL it failed the save, and the sheet was claimed again."""
    if len(student) > STUDENT_CHARS:
        return f"student id {student[:STUDENT_CHARS]}... is longer than {STUDENT_CHARS} characters"
    for column, value in answers.items():
        if len(value) > VALUE_CHARS:
            return f"column {column} was read as {len(value)} characters, more than the {VALUE_CHARS} stored"
    return None


def _failed(reason: str) -> tuple[dict, list[dict]]:
    return dict(status="failed", error=reason[:1000]), []


def _find_qr(image) -> tuple[str, str, int | None] | None:
    """The sheet's QR code, looked for on the whole page (the template is not known yet)."""
    from ..omr.reader import find_qr_payload, parse_qr

    payload = find_qr_payload(image)
    return parse_qr(payload) if payload else None


def _student_from_name(source: str) -> str:
    """A student id from a file name: without folder, extension or page."""
    stem = PurePosixPath(source.replace("\\", "/")).stem
    cleaned = "".join(c for c in stem if c.isalnum() or c == "-")
    return cleaned[:32] or "unknown"
