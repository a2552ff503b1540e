"""A streaming multipart/form-data reader that hands out a file field's bytes as slices of
the chunks aiohttp received: it scans for the delimiter itself, so a 50 MiB chunk is never
copied on its way to the store (aiohttp's BodyPartReader copies each byte once or twice)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from .. import errors
from . import body
from .keys import SETTINGS

MAX_HEADERS = 16 * 1024
MAX_PREAMBLE = 64 * 1024  # a chunked body has no Content-Length to refuse up front


def malformed(why: str) -> errors.ServiceError:
    return errors.BAD_REQUEST(f"Malformed multipart/form-data body: {why}")


class FormPart:
    def __init__(self, form: FormReader, name: str, filename: str | None):
        self.form = form
        self.name = name
        self.filename = filename
        self.done = False

    async def blocks(self) -> AsyncIterator[memoryview | bytes]:
        """The part's bytes, as they arrive; read them all before asking for the next part."""
        async for block in self.form._body():
            yield block
        self.done = True

    async def read(self, limit: int) -> bytes:
        """The whole part, for small fields and files only: refused past `limit` bytes."""
        data = bytearray()
        async for block in self.blocks():
            data += block
            if len(data) > limit:
                raise errors.BAD_REQUEST(f"Form field {self.name} is longer than {limit} bytes")
        return bytes(data)

    async def text(self, limit: int) -> str:
        try:
            text = (await self.read(limit)).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise errors.BAD_REQUEST(f"Form field {self.name} is not UTF-8 text") from None
        if "\x00" in text:
            raise errors.BAD_REQUEST(f"Form field {self.name} contains a NUL character")
        return text


async def form_parts(request: web.Request) -> AsyncIterator[FormPart]:
    """The parts of a multipart/form-data request body, in order, streamed. A body silent for
    idle_timeout fails (408) here, since no upload lock watches a form's other fields."""
    if not request.content_type.startswith("multipart/form-data"):
        raise errors.BAD_REQUEST("Send the request as multipart/form-data")
    boundary = parse_mimetype(request.headers.get("Content-Type", "")).parameters.get("boundary", "")
    if not 0 < len(boundary) <= 200:
        raise malformed("no boundary")
    blocks = body.blocks(request.content, idle=request.app[SETTINGS].idle_timeout)
    async for part in FormReader(blocks, boundary).parts():
        yield part


class FormReader:
    def __init__(self, blocks: AsyncIterator[bytes], boundary: str):
        self._blocks = blocks
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self._data: bytes = b"\r\n"  # so the first boundary line looks like every other delimiter
        self._pos = 0
        self._finished = False

    async def parts(self) -> AsyncIterator[FormPart]:
        preamble = 0
        async for block in self._body():  # the preamble, if any, is not a part
            preamble += len(block)
            if preamble > MAX_PREAMBLE:
                raise malformed(f"more than {MAX_PREAMBLE} bytes before the first boundary")
        while await self._after_delimiter():
            part = await self._headers()
            yield part
            if not part.done:
                async for _ in part.blocks():  # the caller skipped the rest of this part
                    pass

    async def _more(self) -> bool:
        """Appends the next received chunk to what is left; False at the end of the body."""
        chunk = await anext(self._blocks, None)
        if chunk is None:
            return False
        self._data = self._data[self._pos :] + chunk
        self._pos = 0
        return True

    async def _body(self) -> AsyncIterator[memoryview | bytes]:
        """Yields the bytes up to the next delimiter and steps over it. A received chunk is
        never copied: only the short tail of the previous one (shorter than a delimiter) is
        joined with the next chunk's first bytes, to find a delimiter across the seam."""
        keep = len(self.delimiter) - 1
        while True:
            index = self._data.find(self.delimiter, self._pos)
            if index >= 0:
                if index > self._pos:
                    yield memoryview(self._data)[self._pos : index]
                self._pos = index + len(self.delimiter)
                return
            safe = len(self._data) - keep
            if safe > self._pos:
                yield memoryview(self._data)[self._pos : safe]
                self._pos = safe
            chunk = await anext(self._blocks, None)
            if chunk is None:
                raise malformed("the body ended inside a part")
            rest = self._data[self._pos :]
            if rest and len(chunk) > keep and (rest + chunk[:keep]).find(self.delimiter) < 0:
                yield rest  # no delimiter starts in the tail: it is content
                rest = b""
            self._data, self._pos = (rest + chunk if rest else chunk), 0

    async def _after_delimiter(self) -> bool:
        """After a delimiter: '--' ends the form, else optional padding and CRLF start a part."""
        while len(self._data) - self._pos < 2:
            if not await self._more():
                raise malformed("the body ended after a boundary")
        if self._data[self._pos : self._pos + 2] == b"--":
            self._finished = True
            return False
        while True:
            end = self._data.find(b"\r\n", self._pos)
            if end >= 0:
                if self._data[self._pos : end].strip(b" \t"):
                    raise malformed("unexpected bytes after a boundary")
                self._pos = end + 2
                return True
            if len(self._data) - self._pos > 1024 or not await self._more():
                raise malformed("a boundary line does not end")

    async def _headers(self) -> FormPart:
        while (end := self._data.find(b"\r\n\r\n", self._pos)) < 0:
            if len(self._data) - self._pos > MAX_HEADERS:
                raise malformed(f"part headers longer than {MAX_HEADERS} bytes")
            if not await self._more():
                raise malformed("the body ended inside part headers")
        raw = self._data[self._pos : end].decode("latin-1")
        self._pos = end + 4
        disposition = next(
            (
                line.split(":", 1)[1].strip()
                for line in raw.split("\r\n")
                if line.lower().startswith("content-disposition:")
            ),
            None,
        )
        if disposition is None:
            raise malformed("a part has no Content-Disposition")
        kind, params = parse_content_disposition(disposition)
        if kind != "form-data" or not params.get("name"):
            raise errors.BAD_REQUEST(
                "Every form part needs a name (Content-Disposition: form-data; name=...)"
            )
        return FormPart(self, params["name"], content_disposition_filename(params, "filename"))
