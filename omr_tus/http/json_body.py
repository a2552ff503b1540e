"""JSON request bodies parsed off the event loop, their nesting bounded before parsing: a
50,000-deep array is a 400 naming the limit, not a RecursionError (500) or a blocked loop."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

MAX_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


def parse_json(raw: bytes) -> Any:
    """Raises ValueError for invalid JSON or nesting deeper than MAX_DEPTH."""
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', raw)):  # brackets inside strings do not nest
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return json.loads(raw)


async def json_body(request: web.Request) -> Any:
    """The body (at most the application's client_max_size) as JSON; raises ValueError."""
    return await asyncio.to_thread(parse_json, await request.read())
