"""Checks on what a client says about an upload, one rule for tus, IETF and the legacy API
(the upload core applies them at creation: UploadService.kind)."""

from __future__ import annotations

import re

from .. import errors
from .model import TYPES_NEEDING_TASK, UPLOAD_TYPES

TASK_ID = re.compile(r"^[0-9]{8}$")


DEFAULT_TYPE = "zip_with_qr"


def check_upload_type(
    upload_type: str | None, task_id: str | None, *, required: bool = False, part: bool = False
) -> tuple[str, str | None]:
    """Returns (upload_type, task_id). Without a type an upload is zip_with_qr (each sheet's QR
    code names its task), so an off-the-shelf tus or IETF client that sends no metadata works;
    `required` where the protocol's contract makes the field mandatory (the legacy forms:
    PRODUCT.md, 400 without it). A tus partial upload (`part`) needs no task: its final
    upload carries type and task."""
    if not upload_type:
        if required:
            raise errors.BAD_REQUEST(f"upload_type is required: one of {', '.join(UPLOAD_TYPES)}")
        upload_type = DEFAULT_TYPE
    if upload_type not in UPLOAD_TYPES:
        raise errors.BAD_REQUEST(f"Invalid upload_type '{upload_type}': use one of {', '.join(UPLOAD_TYPES)}")
    if task_id:
        if not TASK_ID.match(task_id):
            raise errors.BAD_REQUEST(f"Invalid task_id '{task_id}': it must be exactly 8 digits")
    elif upload_type in TYPES_NEEDING_TASK and not part:
        raise errors.BAD_REQUEST(f"task_id is required for upload_type '{upload_type}'")
    return upload_type, task_id or None
