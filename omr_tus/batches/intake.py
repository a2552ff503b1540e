"""A completed upload becomes a batch: the subscriber to the upload core's completion event.
The batch is inserted in the transaction that marks the upload complete (no crash leaves one
without the other), and once that commits the file starts its move to durable storage, where
the batch workers read it."""

from __future__ import annotations

import logging
import uuid

from ..uploads.archive import Archiver
from ..uploads.events import UploadCompleted
from ..uploads.model import UploadInfo

log = logging.getLogger("omr_tus.batches")


class BatchIntake:
    def __init__(self, archiver: Archiver):
        self._archiver = archiver

    async def recording(self, event: UploadCompleted) -> None:
        upload = event.upload
        if upload.concat == "partial":  # a part of a final upload, not a file of its own
            return
        batch_id = str(uuid.uuid4())
        await event.record.add_batch(
            dict(
                id=batch_id,
                upload_id=upload.id,
                owner_id=upload.owner_id,
                filename=upload.filename,
                size=upload.offset,
                upload_type=upload.upload_type,
                task_id=upload.task_id,
            )
        )
        upload.batch_id = batch_id

    def completed(self, upload: UploadInfo) -> None:
        if upload.batch_id is not None:
            log.info("Upload %s: batch %s", upload.id, upload.batch_id)
            self._archiver.start(upload)
