"""Errors as values: a code, a message for the user and an HTTP status.

The service and the store raise them; the tus layer and the JSON API each map
them to a response in one place (tus: plain text, API: {"detail": ...}).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ErrorSpec:
    code: str
    status: int
    message: str

    def __call__(self, message: str | None = None, headers: dict[str, str] | None = None) -> ServiceError:
        return ServiceError(self, message or self.message, headers or {})


class ServiceError(Exception):
    def __init__(self, spec: ErrorSpec, message: str, headers: dict[str, str]):
        super().__init__(message)
        self.spec = spec
        self.message = message
        self.headers = headers

    @property
    def status(self) -> int:
        return self.spec.status

    @property
    def code(self) -> str:
        return self.spec.code


BAD_REQUEST = ErrorSpec("ERR_BAD_REQUEST", 400, "bad request")
INVALID_OFFSET = ErrorSpec("ERR_INVALID_OFFSET", 400, "Upload-Offset must be a non-negative integer")
INVALID_LENGTH = ErrorSpec("ERR_INVALID_LENGTH", 400, "Upload-Length must be a non-negative integer")
INVALID_METADATA = ErrorSpec("ERR_INVALID_METADATA", 400, "Upload-Metadata is malformed")
UNSUPPORTED_CHECKSUM = ErrorSpec("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", 400, "unsupported checksum algorithm")
UNAUTHORIZED = ErrorSpec(
    "ERR_UNAUTHORIZED",
    401,
    "Not authenticated: send 'Authorization: Bearer <token>' with a token from POST /api/auth/login",
)
FORBIDDEN = ErrorSpec("ERR_FORBIDDEN", 403, "forbidden")
NOT_FOUND = ErrorSpec("ERR_UPLOAD_NOT_FOUND", 404, "upload not found")
CONFLICT = ErrorSpec("ERR_CONFLICT", 409, "conflict")
OFFSET_MISMATCH = ErrorSpec(
    "ERR_MISMATCHED_OFFSET", 409, "Upload-Offset does not match the upload's current offset"
)
UPLOAD_GONE = ErrorSpec("ERR_UPLOAD_GONE", 410, "upload has expired or was terminated")
PRECONDITION = ErrorSpec(
    "ERR_UNSUPPORTED_VERSION", 412, "unsupported or missing Tus-Resumable; this server speaks 1.0.0"
)
TOO_LARGE = ErrorSpec("ERR_MAX_SIZE_EXCEEDED", 413, "upload is larger than the maximum size")
# 413 too, but for this user: the upload fits the server, not what their quota leaves them
QUOTA_EXCEEDED = ErrorSpec(
    "ERR_QUOTA_EXCEEDED", 413, "Quota exceeded: this upload does not fit in your quota"
)
UNSUPPORTED_MEDIA = ErrorSpec(
    "ERR_INVALID_CONTENT_TYPE", 415, "PATCH requests must use Content-Type: application/offset+octet-stream"
)
TOO_MANY_REQUESTS = ErrorSpec("ERR_TOO_MANY_REQUESTS", 429, "too many requests; retry later")
LOCKED = ErrorSpec("ERR_UPLOAD_LOCKED", 423, "upload is being written by another request; retry shortly")
CHECKSUM_MISMATCH = ErrorSpec(
    "ERR_CHECKSUM_MISMATCH", 460, "checksum mismatch; the bytes of this request were discarded"
)
DIGEST_MISMATCH = ErrorSpec(
    "ERR_DIGEST_MISMATCH",
    400,
    "the completed file does not match the digest declared when the upload was created",
)
INTERRUPTED = ErrorSpec(
    "ERR_UPLOAD_INTERRUPTED",
    400,
    "the request body stalled, so the server stopped reading it (a newer request wanted the "
    "upload, or nothing arrived for the idle timeout); the bytes that arrived are kept: "
    "resume from the offset a HEAD request reports",
)
BODY_TIMEOUT = ErrorSpec("ERR_BODY_TIMEOUT", 408, "the request body stalled")
BUSY = ErrorSpec("ERR_BUSY", 503, "the server is busy; retry in a few seconds")
UNAVAILABLE = ErrorSpec("ERR_UNAVAILABLE", 503, "the database cannot be reached right now; retry shortly")
STORE_UNAVAILABLE = ErrorSpec(
    "ERR_STORE_UNAVAILABLE",
    503,
    "the store could not save this request's bytes; what it saved before is kept: "
    "retry shortly, from the offset a HEAD request reports",
)
INSUFFICIENT_STORAGE = ErrorSpec("ERR_INSUFFICIENT_STORAGE", 507, "not enough free space to store the upload")
