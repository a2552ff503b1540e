"""What the upload core publishes when an upload has all its bytes. The core knows nothing of
what a completed upload becomes (a batch): a subscriber decides, inside the completion's
transaction, and starts what follows it once committed (omr_tus/batches/intake.py)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

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
