"""What a removed upload takes with it on the batch side: the subscriber to the upload core's
removal event. In the removal's transaction it deletes the batch (its sheets, answers and
corrections go with it) or, when only the file goes, notes on the batch when; and it writes
the audit row: who deleted what, when, and how many bytes. Retention only ever takes a batch
no worker reads (completed or failed): one reprocessed since it was found due is left."""

from __future__ import annotations

from ..uploads.events import RemovalRefused, UploadRemoved


class BatchRemoval:
    async def removing(self, event: UploadRemoved) -> None:
        upload, record = event.upload, event.record
        if event.by is None and await record.finished_batch(upload.id) is None:
            raise RemovalRefused(f"batch of upload {upload.id} is being read again")  # retention waits
        if event.whole:
            batch = await record.drop_batch(upload.id)
        else:
            batch = await record.file_deleted(upload.id)
        await record.audit(
            what="batch" if event.whole else "file",
            batch_id=batch.id if batch is not None else None,
            upload_id=upload.id,
            owner_id=upload.owner_id,
            deleted_by=event.by,
            reason="retention" if event.by is None else "request",
            filename=upload.filename,
            size=batch.size if batch is not None else upload.offset,
        )
