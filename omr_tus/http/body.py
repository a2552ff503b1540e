"""A request body as it arrives, read on aiohttp's public StreamReader contract only; the
one reader under tus and IETF appends (tus/handlers.py) and multipart forms (multipart.py).

aiohttp's readchunk() answers (b"", True) where an HTTP chunk of a chunked body ends and more
may follow: only (b"", False) is the end of the body (StreamReader.iter_chunks stops there).
Taking the first empty answer for the end cut chunked bodies short, wherever a chunk's data
and its closing CRLF reached the server apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import StreamReader, web

from .. import errors
from ..uploads.model import Interrupted


async def blocks(content: StreamReader, idle: float | None = None) -> AsyncIterator[bytes]:
    """The body's bytes to its end, in the pieces aiohttp received them (its own buffers:
    nothing is joined or copied). A body that breaks raises: the client went away
    (ConnectionError), the framing is malformed (400), a newer request took the upload over
    (the exception set on the stream), or, with `idle`, nothing arrived for that many seconds
    (408). The pieces already handed out are all the caller can keep."""
    chunks = content.iter_chunks()
    while True:
        try:
            async with asyncio.timeout(idle):
                block, _ = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise errors.BODY_TIMEOUT(f"The request body stalled: nothing arrived for {idle:g} s") from None
        except web.RequestPayloadError as exc:
            raise errors.BAD_REQUEST(f"The request body is malformed: {exc}") from None
        if block:
            yield block
        elif content.at_eof():  # an ended body read again answers (b"", True) for ever
            return


def interrupter(request: web.Request) -> Callable[[], None]:
    """Ends the request's body with Interrupted: a newer request took its upload over."""
    return lambda: request.content.set_exception(Interrupted())


def received(request: web.Request) -> Callable[[], int]:
    """The bytes of the request's body so far: the client's activity."""
    return lambda: request.content.total_bytes
