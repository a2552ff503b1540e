"""The store interface, after tusd's DataStore: a small core every store implements,
and optional capabilities (checked with isinstance) that switch protocol features on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Protocol, runtime_checkable


class WriteProgress:
    """Shared between a store write and its caller, so bytes already on the store are
    known even when the body stream fails half way."""

    __slots__ = ("written", "last_activity")

    def __init__(self) -> None:
        self.written = 0
        self.last_activity = time.monotonic()


@runtime_checkable
class Store(Protocol):
    async def create(self, upload_id: str) -> None:
        """Make an empty upload."""

    async def write(
        self, upload_id: str, offset: int, blocks: AsyncIterable[bytes], progress: WriteProgress
    ) -> int:
        """Write the blocks at offset; progress.written only ever counts bytes on the store
        past offset (below 0 if bytes before offset had to be taken back and could not be
        stored again: the offset then moves back)."""

    async def size(self, upload_id: str) -> int:
        """Bytes stored for the upload."""

    async def delete(self, upload_id: str) -> None:
        """Remove the upload's bytes; no error if they are already gone."""

    def free_space(self) -> int:
        """Bytes the store can still take."""

    async def close(self) -> None:
        """Let go of threads and connections."""


@runtime_checkable
class Truncater(Protocol):
    """Can drop bytes past a size: needed to discard a body whose checksum failed."""

    async def truncate(self, upload_id: str, size: int) -> None: ...


@runtime_checkable
class LocalFiles(Protocol):
    """Keeps each upload as a local file: enables sendfile and kernel-side copies."""

    def path(self, upload_id: str) -> Path: ...


@runtime_checkable
class RangeCopier(Protocol):
    """Can copy one stored object into another at an offset without the bytes passing
    through Python (copy_file_range): spooled legacy chunks, tus concatenation."""

    async def copy_into(self, src_id: str, dst_id: str, dst_offset: int) -> int: ...


@runtime_checkable
class Finisher(Protocol):
    """Must assemble an upload when its last byte has arrived (S3: complete the multipart upload)."""

    async def finish(self, upload_id: str) -> None: ...


@runtime_checkable
class RemoteFiles(Protocol):
    """Keeps completed uploads away from this machine: they are streamed, or copied to a local
    file for what needs one (a ZIP is read out of order)."""

    def read(self, upload_id: str): ...  # async context manager of (size, async iterator of bytes)

    async def download(self, upload_id: str, path: Path) -> None: ...

    async def ready(self) -> None:
        """Raises if the remote cannot be reached (for /readyz)."""


@runtime_checkable
class PartWriter(Protocol):
    """Cannot write at any offset, but stores numbered parts in any order and joins them when the
    upload finishes (S3): the legacy API's chunk i becomes part i + 1. Every part but the last
    must hold at least min_part_size bytes."""

    min_part_size: int

    async def write_part(
        self, upload_id: str, number: int, blocks: AsyncIterable[bytes], progress: WriteProgress
    ) -> int: ...
