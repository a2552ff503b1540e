"""HTTP plumbing shared by every command: one session, the server's error messages, and
which failures are worth retrying.

The server answers errors as {"detail": ...} on /api and as plain text on tus routes;
`ServerError` carries either as the message the user sees.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

T = TypeVar("T")

# Connect quickly or fail; the read timeout only starts once a request body is sent, so a
# slow upload of a large chunk never trips it.
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)


class ClientError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


class ServerError(ClientError):
    """An error answer, with the server's own message."""

    def __init__(self, status: int, message: str):
        super().__init__(f"the server answered {status}: {message}")
        self.status = status

    @property
    def transient(self) -> bool:
        """423 (another request holds the upload) and 5xx may pass; other 4xx will not."""
        return self.status == 423 or self.status >= 500


def session(token: str | None = None) -> aiohttp.ClientSession:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(headers=headers, timeout=TIMEOUT)


async def check(response: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
    """Returns a successful response; raises ServerError with the server's own message."""
    if response.status < 400:
        return response
    text = (await response.text(errors="replace")).strip()
    message = text
    if response.content_type == "application/json":
        try:
            message = str((await response.json()).get("detail") or text)
        except (ValueError, AttributeError):
            pass
    raise ServerError(response.status, message or response.reason or "no message")


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ServerError):
        return exc.transient
    return isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError))


class Backoff:
    """Counts consecutive failures and sleeps 1, 2, 4, ... seconds between attempts; the
    failure after the last retry is raised."""

    def __init__(self, retries: int, what: str):
        self.retries = retries
        self.what = what
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    async def wait(self, exc: BaseException) -> None:
        if not is_transient(exc):
            raise exc
        self.failures += 1
        reason = str(exc) or type(exc).__name__
        if self.failures > self.retries:
            raise ClientError(f"{self.what} failed {self.failures} times, giving up: {reason}") from exc
        delay = 2.0 ** (self.failures - 1)
        newline = "\n" if sys.stderr.isatty() else ""  # off the progress bar's line
        print(
            f"{newline}{self.what} failed ({reason}); retry {self.failures}/{self.retries} in {delay:g}s",
            file=sys.stderr,
            flush=True,
        )
        await asyncio.sleep(delay)

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it succeeds, a failure is not transient, or the retries run out."""
        while True:
            try:
                return await attempt()
            except Exception as exc:
                await self.wait(exc)
