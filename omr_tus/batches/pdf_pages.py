"""PDFs opened and rendered in a child process, under a wall-clock limit per call.

pdfium cannot be told to stop: a 4 KB PDF of nested form XObjects renders for hours, and a
thread running it can never be taken back. In a child process it can: a call that passes the
limit kills the child, and the caller gets a PdfError with the reason (the sheet fails with it
instead of being claimed again after the lease). Children are kept between documents, so a
batch of PDFs costs no process start per sheet; only one document is open in a child at a time.

Run as `python -m omr_tus.batches.pdf_pages` it is the child: requests on stdin, answers on
stdout, each a kind byte and a length-prefixed payload."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import subprocess
import sys
import threading
import time
from typing import IO

import numpy as np

HEADER = struct.Struct("<cQ")  # kind, payload length
OPEN, RENDER, OK, ERROR = b"O", b"R", b"K", b"E"
PAGE_REQUEST = struct.Struct("<Idq")  # page index from 0, width in pixels, pixel limit
PAGE_SHAPE = struct.Struct("<II")  # height, width of the grey pixels that follow
PIPE_BYTES = 1024 * 1024  # the most a process may ask for by default (fs.pipe-max-size)
IDLE_KEPT = 4  # children kept for the next document: one per worker thread or review thread is enough


class PdfError(Exception):
    """The PDF cannot be opened or its page rendered; the message says why."""


class PdfProcess:
    """One child process holding at most one open PDF. One thread at a time."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdin is not None and self.process.stdout is not None  # both PIPEs
        self.requests: IO[bytes] = self.process.stdin
        self.answers: IO[bytes] = self.process.stdout
        self.killed = False
        for pipe in (self.requests, self.answers):  # a page in a few switches, not 64 KiB each
            with contextlib.suppress(OSError, AttributeError):  # (Linux only; the default works too)
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)

    def open(self, data: bytes, seconds: float) -> int:
        """Opens the PDF in the child (closing the one before); its number of pages."""
        (pages,) = struct.unpack("<Q", self._call(OPEN, data, seconds, "opening it"))
        return pages

    def render(self, index: int, width: int, max_pixels: int, seconds: float) -> np.ndarray:
        """Page `index` (from 0) in grey, as wide as `width` pixels and at least 150 dpi."""
        answer = self._call(
            RENDER, PAGE_REQUEST.pack(index, width, max_pixels), seconds, f"rendering page {index + 1}"
        )
        height, columns = PAGE_SHAPE.unpack_from(answer)
        return np.frombuffer(answer, np.uint8, offset=PAGE_SHAPE.size).reshape(height, columns)

    @property
    def alive(self) -> bool:
        return not self.killed and self.process.poll() is None

    def close(self) -> None:
        """Ends the child: at end of its input, or killed if it does not end at once."""
        with contextlib.suppress(OSError):
            self.requests.close()
        try:
            self.process.wait(timeout=0 if self.killed else 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.answers.close()

    def _call(self, kind: bytes, payload: bytes, seconds: float, doing: str) -> bytearray:
        timer = threading.Timer(seconds, self._kill)
        timer.start()
        answer: bytes | None
        try:
            _send(self.requests, kind, payload)
            answer, body = _receive(self.answers)
        except (OSError, ValueError, EOFError):
            answer, body = None, bytearray()
        finally:
            timer.cancel()
        if self.killed:
            raise PdfError(f"{doing} took longer than {seconds:g} s")
        if answer is None:
            self._kill()
            raise PdfError(f"the PDF renderer stopped while {doing}")
        if answer == ERROR:
            raise PdfError(body.decode("utf-8", "replace"))
        return body

    def _kill(self) -> None:
        self.killed = True
        self.process.kill()


_idle: list[PdfProcess] = []
_idle_lock = threading.Lock()


def acquire() -> PdfProcess:
    """An idle child, or a new one."""
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return PdfProcess()


def release(child: PdfProcess) -> None:
    """Back to the idle ones, unless it was killed or enough are idle already."""
    with _idle_lock:
        if child.alive and len(_idle) < IDLE_KEPT:
            _idle.append(child)
            return
    child.close()


def _receive(stream) -> tuple[bytes, bytearray]:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError
    kind, length = HEADER.unpack(header)
    body = bytearray(length)  # read into at once: a page is megabytes
    if stream.readinto(body) < length:
        raise EOFError
    return kind, body


def _send(stream, kind: bytes, *parts) -> None:
    stream.write(HEADER.pack(kind, sum(memoryview(part).nbytes for part in parts)))
    for part in parts:
        stream.write(part)
    stream.flush()


def _serve(requests, answers) -> None:
    """The child's loop: one open document, pages rendered on request, until end of input."""
    import pypdfium2

    document = None
    while True:
        try:
            kind, body = _receive(requests)
        except EOFError:
            return
        try:
            if kind == OPEN:
                if document is not None:
                    document.close()
                    document = None
                document = pypdfium2.PdfDocument(bytes(body))
                answer = [struct.pack("<Q", len(document))]
            else:
                if document is None:
                    raise ValueError("no PDF is open")
                index, width, max_pixels = PAGE_REQUEST.unpack(body)
                answer = _render(document[index], width, max_pixels)
        except Exception as exc:  # reported to the caller, who fails the sheet with it
            _send(answers, ERROR, f"{type(exc).__name__}: {exc}".encode())
        else:
            _send(answers, OK, *answer)


def _render(page, width: int, max_pixels: int) -> list:
    points = page.get_width()  # 1/72 inch
    scale = max(width / points, 150 / 72)
    if points * scale * page.get_height() * scale > max_pixels:
        raise PdfError("PDF page too large to render")
    grey = np.ascontiguousarray(page.render(scale=scale, grayscale=True).to_numpy())
    return [PAGE_SHAPE.pack(*grey.shape[:2]), grey.data]


def _exit_when_orphaned() -> None:
    """Ends the child once its parent is gone, even in the middle of a render (pdfium runs
    without the GIL): a worker killed outright leaves no render going on for hours."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


if __name__ == "__main__":
    threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    _serve(sys.stdin.buffer, answers)
