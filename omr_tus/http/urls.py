"""Absolute URLs as the client sees them, and the client's address, behind a proxy too
(Forwarded, X-Forwarded-*)."""

from __future__ import annotations

import re

from aiohttp import web

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def base_url(request: web.Request, trust_proxy: bool) -> str:
    scheme, host = request.scheme, request.host
    if trust_proxy:
        forwarded = request.forwarded[0] if request.forwarded else {}
        scheme = forwarded.get("proto") or _first(request.headers.get("X-Forwarded-Proto")) or scheme
        host = forwarded.get("host") or _first(request.headers.get("X-Forwarded-Host")) or host
    if scheme not in ("http", "https"):
        scheme = request.scheme
    if not _HOST.match(host or ""):
        host = request.host if _HOST.match(request.host or "") else "localhost"
    return f"{scheme}://{host}"


def client_address(request: web.Request, trust_proxy: bool) -> str:
    """The address the nearest proxy saw (the last one it added to X-Forwarded-For, or the
    last Forwarded element), else the peer's: a client can forge every earlier entry."""
    if trust_proxy:
        chain = request.headers.get("X-Forwarded-For")
        seen = chain.split(",")[-1].strip() if chain else None
        if not seen and request.forwarded:
            seen = request.forwarded[-1].get("for")
        if seen:
            return seen[:64]
    return request.remote or "unknown"


def _first(value: str | None) -> str | None:
    return value.split(",")[0].strip() if value else None
