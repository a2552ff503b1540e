"""What the upload core publishes when an upload has all its bytes, and when a completed one is
removed. The core knows nothing of what a completed upload becomes (a batch): a subscriber
decides, inside the completion's transaction, and starts what follows it once committed
(omr_tus/batches/intake.py); on removal, it removes what it made (omr_tus/batches/removal.py)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from ..db.removals import RemovalRecord
from ..db.repo import CompletionRecord
from .model import UploadInfo


@dataclasses.dataclass
class UploadCompleted:
    """An upload completed at `upload.offset` bytes. `record` writes in the transaction that
    marks it complete; `upload.batch_id` is what the subscriber made of it (the response that
    completes the upload carries it)."""

    upload: UploadInfo
    record: CompletionRecord


class CompletionSubscriber(Protocol):
    async def recording(self, event: UploadCompleted) -> None:
        """Inside the completion's transaction: a failure here leaves the upload incomplete."""

    def completed(self, upload: UploadInfo) -> None:
        """After the commit, before the response: start background work, never wait for it."""


@dataclasses.dataclass
class UploadRemoved:
    """A completed upload is being removed: `whole` (it and everything made of it) or only its
    file (retention keeps the results). `by` is the user who asked (None: retention). `record`
    writes in the transaction that marks the removal; the bytes go after it commits."""

    upload: UploadInfo
    whole: bool
    by: int | None
    record: RemovalRecord


class RemovalRefused(Exception):
    """Raised by a subscriber that finds the removal no longer due (retention racing a change):
    the transaction rolls back and nothing is removed."""


class RemovalSubscriber(Protocol):
    async def removing(self, event: UploadRemoved) -> None:
        """Inside the removal's transaction: a failure here removes nothing."""
