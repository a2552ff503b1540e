"""Checksum algorithms for tus's checksum extension (sha1 is the one the spec requires)."""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from collections.abc import Callable
from typing import Any


class _Crc32:
    """hashlib-like wrapper: the digest is the 4-byte big-endian CRC, as tusd encodes it."""

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
    "crc32": _Crc32,
}


@dataclasses.dataclass(frozen=True)
class Checksum:
    algorithm: str
    expected: bytes

    def new(self):
        return ALGORITHMS[self.algorithm]()
