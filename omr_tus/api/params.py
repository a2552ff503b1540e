"""Query and form parameter checks that answer 400 with a {"detail"} that says what to send."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import errors


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.BAD_REQUEST(
            f"{name} must be an integer between {low} and {high}, got {raw[:40]!r}"
        ) from None
    if not low <= value <= high:
        raise errors.BAD_REQUEST(f"{name} must be between {low} and {high}, got {value}")
    return value


def page(params: Mapping[str, str], default: int, most: int) -> tuple[int, int]:
    """A listing's limit (1 to `most`, `default` when not given) and offset."""
    return integer(params, "limit", default, 1, most), integer(params, "offset", 0, 0, 10**9)


def choice(params: Mapping[str, str], name: str, allowed: Iterable[str]) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    allowed = tuple(allowed)
    if raw not in allowed:
        raise errors.BAD_REQUEST(f"{name} must be one of {', '.join(allowed)}, got {raw[:40]!r}")
    return raw
