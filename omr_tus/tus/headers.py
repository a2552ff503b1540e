"""Parsing and checking of tus request headers; every problem becomes a ServiceError."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from .. import errors
from ..uploads.checksums import ALGORITHMS, Checksum

TUS_VERSION = "1.0.0"
OFFSET_STREAM = "application/offset+octet-stream"
# The headers of tus requests and answers (CORS allows and exposes them).
FIELDS = (
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Expires",
    "Upload-Checksum",
)
MAX_METADATA = 4096
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_META_KEY = re.compile(r"^[!-+\--~]+$")  # printable ASCII without space and comma
# Keys whose values the server reads: they must be text. Other values may be any bytes
# (the spec allows binary values); those are kept only as sent, in the raw header.
INTERPRETED = ("filename", "filetype", "upload_type", "task_id", "sha256")


def check_version(headers: Mapping[str, str]) -> None:
    if headers.get("Tus-Resumable") != TUS_VERSION:
        raise errors.PRECONDITION(headers={"Tus-Version": TUS_VERSION})


def non_negative(value: str | None, spec: errors.ErrorSpec, name: str) -> int | None:
    if value is None:
        return None
    if not _DIGITS.match(value.strip()):
        raise spec(f"{name} must be a non-negative integer, got {value[:40]!r}")
    return int(value)


def upload_offset(headers: Mapping[str, str]) -> int:
    offset = non_negative(headers.get("Upload-Offset"), errors.INVALID_OFFSET, "Upload-Offset")
    if offset is None:
        raise errors.INVALID_OFFSET("Upload-Offset header is required")
    return offset


def upload_length(headers: Mapping[str, str]) -> int | None:
    return non_negative(headers.get("Upload-Length"), errors.INVALID_LENGTH, "Upload-Length")


def creation_length(headers: Mapping[str, str]) -> int | None:
    """Upload-Length, or None when the client defers it with Upload-Defer-Length: 1."""
    length = upload_length(headers)
    defer = headers.get("Upload-Defer-Length")
    if defer is not None and defer.strip() != "1":
        raise errors.INVALID_LENGTH("Upload-Defer-Length must be 1")
    if (length is None) == (defer is None):
        raise errors.INVALID_LENGTH("send exactly one of Upload-Length and Upload-Defer-Length: 1")
    return length


def metadata(raw: str | None) -> dict[str, str]:
    """Upload-Metadata: comma-separated 'key base64value' pairs; a value may be absent. The
    text values (UTF-8 without NUL) come back decoded; a binary value is left out here, and
    HEAD returns it byte for byte from the raw header."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA:
        raise errors.INVALID_METADATA(f"Upload-Metadata is longer than {MAX_METADATA} characters")
    result: dict[str, str] = {}
    for pair in raw.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or not _META_KEY.match(key):
            raise errors.INVALID_METADATA(
                f"Upload-Metadata pair {pair.strip()[:60]!r} is not 'key base64value'"
            )
        if key in result:
            raise errors.INVALID_METADATA(f"Upload-Metadata key {key!r} appears twice")
        value = _text(key, parts[1]) if len(parts) == 2 else ""
        if value is not None:
            result[key] = value
    return result


def _text(key: str, encoded: str) -> str | None:
    """A value as text; None for binary, which only keys the server does not read may carry."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise errors.INVALID_METADATA(f"Upload-Metadata value of {key!r} is not base64") from None
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        value = None
    if value is not None and "\x00" not in value:
        return value
    if key in INTERPRETED:
        raise errors.INVALID_METADATA(f"Upload-Metadata value of {key!r} must be UTF-8 text without NUL")
    return None


def checksum(value: str | None) -> Checksum | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise errors.UNSUPPORTED_CHECKSUM(
            f"Checksum algorithm {algorithm[:20]!r} is not supported; use one of {', '.join(ALGORITHMS)}"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.BAD_REQUEST("Upload-Checksum digest is not valid base64") from None
    return Checksum(algorithm, digest)  # a digest of the wrong length simply never matches: 460


def concat(value: str | None) -> tuple[str | None, list[str]]:
    """Upload-Concat: 'partial', or 'final;' and the partial uploads' URLs (absolute or relative)."""
    if value is None:
        return None, []
    value = value.strip()
    if value == "partial":
        return "partial", []
    if value.startswith("final;"):
        ids = []
        for url in value[len("final;") :].split():
            path = urlsplit(url).path.rstrip("/")
            if not path.startswith("/files/") or "/" in path[len("/files/") :]:
                raise errors.BAD_REQUEST(f"Upload-Concat URL {url[:80]!r} is not an upload of this server")
            ids.append(path[len("/files/") :])
        return "final", ids
    raise errors.BAD_REQUEST("Upload-Concat must be 'partial' or 'final;<url> <url> ...'")
