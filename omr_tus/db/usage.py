"""What a user stores and has committed to store, as SQL expressions shared by every reader:
the users list and /api/me (admin_repo.py), the quota check (repo.py, uploads/quotas.py) and
the storage overview. One definition, so the figures a user sees are the ones enforced."""

from __future__ import annotations

from sqlalchemy import and_, case, exists, func, or_

from .models import Upload, UploadPart

uploads = Upload.__table__
c = uploads.c

# Bytes that are not (or no longer) the user's to keep: a concatenation's partials once their
# bytes were joined into the final (counted there), a completed file the durable store lost, a
# completed file retention deletes or deleted (its row and results stay).
GONE_LOCATIONS = ("consumed", "lost", "deleting", "deleted")
# A partial upload whose final is complete: its bytes were copied into the final (counted
# there) and are being freed in the background.
_final, _parts = uploads.alias("final"), UploadPart.__table__
JOINED = and_(
    func.coalesce(c.concat, "") == "partial",  # never NULL: NOT of it must hold for the others
    exists().where(
        _parts.c.partial_id == c.id, _parts.c.final_id == _final.c.id, _final.c.status == "complete"
    ),
)
# An upload in progress or complete, whose bytes are still where it says and its own.
STORED = and_(c.status.in_(("active", "complete")), c.location.not_in(GONE_LOCATIONS), ~JOINED)
stored_bytes = func.coalesce(func.sum(case((STORED, c.upload_offset), else_=0)), 0)

# An active upload's bytes still to come: its declared length, or for a legacy chunked upload
# total_chunks x the size of chunk 0, less what it holds. A final upload's bytes are its
# partial uploads' (counted there), so it commits to nothing more.
_promised = func.coalesce(c.length, c.total_chunks * c.chunk_size)
COMMITTING = and_(
    c.status == "active",
    _promised.is_not(None),
    or_(c.concat.is_(None), c.concat != "final"),
)
committed_bytes = func.coalesce(func.sum(case((COMMITTING, _promised - c.upload_offset), else_=0)), 0)
