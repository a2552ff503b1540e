"""Safe file names: on disk (no folders, no control characters) and in Content-Disposition."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/]')


def clean_filename(name: str | None) -> str | None:
    """The last path component, without control characters, at most 255 characters."""
    if not name:
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", name)).strip()
    if name in ("", ".", ".."):
        return None
    return name[:255]


def content_disposition(name: str | None, fallback: str) -> str:
    name = clean_filename(name) or fallback
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
