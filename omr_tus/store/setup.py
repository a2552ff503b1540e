"""The stores the settings ask for, opened and closed together (the app and the worker share it)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from ..config import Settings
from .base import Store
from .files import CompletedFiles
from .local import LocalStore


@dataclasses.dataclass
class Stores:
    incoming: Store  # uploads in progress
    durable: LocalStore  # completed uploads moved off a local incoming store
    files: CompletedFiles  # completed uploads, wherever they are
    scratch: LocalStore  # local files that wait for a moment (a chunk before its form fields)


@contextlib.asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    durable = LocalStore(settings.durable_dir, threads=4)
    scratch = LocalStore(settings.data_dir / "scratch", threads=4)
    incoming: Store
    if settings.store == "s3":
        from .s3 import S3Settings, S3Store

        incoming = await S3Store(
            S3Settings(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint=settings.s3_endpoint or None,
                region=settings.s3_region,
                access_key=settings.s3_access_key or None,
                secret_key=settings.s3_secret_key or None,
                part_size=settings.s3_part_size,
            ),
            spool_dir=settings.data_dir / "s3-spool",
        ).open()
    else:
        incoming = LocalStore(settings.store_dir)
    try:
        yield Stores(
            incoming, durable, CompletedFiles(incoming, durable, settings.data_dir / "cache"), scratch
        )
    finally:
        for store in (incoming, durable, scratch):
            await store.close()
