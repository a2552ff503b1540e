"""What each interop version of draft-ietf-httpbis-resumable-upload puts on the wire, and the
parsing of its request headers; every problem becomes a ServiceError.

A request speaks this protocol when it carries `Upload-Draft-Interop-Version` and no
`Tus-Resumable`. Sources: the draft texts -01 to -12 (their change logs say when the interop
version was raised), tusd's `pkg/handler/unrouted_handler.go` (interop 3 to 6) and
tus-js-client 4's `protocol` option.

| interop | drafts     | completeness field             | PATCH without it | PATCH Content-Type  | Upload-Length | Upload-Limit keys                | problem types           | PATCH answer |
|---------|------------|--------------------------------|------------------|---------------------|---------------|----------------------------------|-------------------------|--------------|
| 3       | -01        | Upload-Incomplete (?1 = more)  | completes        | any                 | read only (*) | -                                | -                       | 201          |
| 4       | -02        | Upload-Complete (?1 = last)    | does not         | any                 | read only (*) | -                                | -                       | 201          |
| 5       | -03        | Upload-Complete                | does not         | any                 | read only (*) | -                                | -                       | 201          |
| 6       | -04, -05   | Upload-Complete                | does not         | partial-upload (**) | yes           | max-size, min-size, expires      | offset, completed (***) | 201          |
| 7       | -06 to -08 | Upload-Complete                | does not         | partial-upload      | yes           | max-size, min-size, max-age      | + inconsistent length   | 204          |
| 8       | -09 to -12 | Upload-Complete                | 400 (required)   | partial-upload      | yes           | as 7, required on 104 and HEAD   | as 7                    | 204          |

(**) `application/partial-upload`, else 415. (***) `mismatching-upload-offset` (with the
`expected-offset` and `provided-offset` members), `completed-upload`; 7 adds
`inconsistent-upload-length`, all under https://iana.org/assignments/http-problem-types#.
(*) Upload-Length arrived in -05; like tusd, a creation's Upload-Length is read in every
version (tus-js-client sends it, see below), but sent back on HEAD only from 6 on.

Common to all: creation by any request with a body (here POST /files/) carrying the
completeness field (400 without it) and no Upload-Offset; `104 Upload Resumption Supported`
with `Location` and `Upload-Draft-Interop-Version` (plus `Upload-Limit` from 6 on) before the
body is read; `Upload-Offset` in creation and append answers (tus-js-client needs it); HEAD
answers 204 with Upload-Offset, the completeness field and `Cache-Control: no-store`; 409 with
the current `Upload-Offset` on a wrong offset; DELETE answers 204. Drafts -01 to -05 also make
HEAD and DELETE requests that carry Upload-Offset or the completeness field (HEAD: Upload-Length
too, from -05) a 400. A creation with `Upload-Complete: ?1` and a Content-Length declares the
length; without one (chunked) the length is the bytes received. Draft -10 adds `Accept-Patch:
application/partial-upload` to OPTIONS (sent here from 6 on, with Upload-Limit).

tus-js-client 4: `protocol: 'ietf-draft-03'` sends interop 5 and no Content-Type on PATCH;
`'ietf-draft-05'` sends interop 6 and `Content-Type: application/partial-upload` (on a POST
with data too). Both also send tus' Upload-Length (or Upload-Defer-Length) and Upload-Metadata,
`Upload-Complete: ?0` on an empty creation and ?1/?0 on every PATCH, except that with a Node
file stream the last PATCH says ?0 too (its FileSource never reports the end), so only the
declared length completes such an upload; Node's http stack skips the 104. tusd stops at
interop 6.

Choices where the drafts leave room: a 409 is `application/problem+json` in every version
(`about:blank` before 6, which defines no type); an upload whose offset reaches a known length
completes (as in tus: that is when the batch is made) even if the request said ?0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from .. import errors
from ..tus import headers as tus_headers

INTEROP = "Upload-Draft-Interop-Version"
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"
# Request and response fields a browser must be allowed to send and to read (CORS).
FIELDS = (
    INTEROP,
    "Upload-Complete",
    "Upload-Incomplete",
    "Upload-Limit",
    "Content-Disposition",
    "Repr-Digest",
)

COMPLETED = errors.ErrorSpec("ERR_UPLOAD_COMPLETED", 400, "upload is already completed")
INCONSISTENT_LENGTH = errors.ErrorSpec(
    "ERR_INCONSISTENT_LENGTH", 400, "inconsistent length values for upload"
)
# Problem type name and title (as the drafts word them) of the errors that have one.
PROBLEMS = {
    errors.OFFSET_MISMATCH: (
        "mismatching-upload-offset",
        "offset from request does not match offset of resource",
    ),
    COMPLETED: ("completed-upload", COMPLETED.message),
    INCONSISTENT_LENGTH: ("inconsistent-upload-length", INCONSISTENT_LENGTH.message),
}


@dataclasses.dataclass(frozen=True)
class Version:
    number: int
    drafts: str
    complete_field: str  # Upload-Incomplete (3, inverted) or Upload-Complete
    absent_completes: bool | None  # a PATCH without the field: completes (3), does not, None: 400 (8)
    patch_type: str | None  # the Content-Type a PATCH must have
    upload_length: bool  # the Upload-Length field exists (and is sent back on HEAD)
    age_key: str | None  # the lifetime key of Upload-Limit; None: no Upload-Limit at all
    problems: tuple[str, ...]  # problem types the draft defines
    append_status: int
    refused_on_head: tuple[str, ...] = ()  # request fields the draft makes a 400 on HEAD
    refused_on_delete: tuple[str, ...] = ()

    @property
    def inverted(self) -> bool:
        return self.complete_field == "Upload-Incomplete"

    def completeness(self, complete: bool) -> dict[str, str]:
        return {self.complete_field: "?1" if complete != self.inverted else "?0"}

    def requested_complete(self, headers: Mapping[str, str], creation: bool) -> bool:
        """Whether the request's content ends the representation."""
        value = sf_boolean(headers.get(self.complete_field))
        if value is not None:
            return value != self.inverted
        if creation or self.absent_completes is None:
            raise errors.BAD_REQUEST(
                f"{self.complete_field} is required (?1 or ?0) in interop version {self.number}"
            )
        return self.absent_completes

    @staticmethod
    def length(headers: Mapping[str, str]) -> int | None:
        """Upload-Length, read in every version as tusd does: tus-js-client sends it in every
        version, and with a file stream it never marks its last PATCH ?1, so the length is
        what completes such an upload. Only versions that define it get it back on HEAD."""
        return tus_headers.upload_length(headers)

    def refuse(self, headers: Mapping[str, str], fields: tuple[str, ...]) -> None:
        present = [f for f in fields if f in headers]
        if present:
            raise errors.BAD_REQUEST(
                f"this request must not carry {', '.join(present)} (interop version {self.number})"
            )

    def limits(self, max_size: int, expires_at: dt.datetime | None = None) -> dict[str, str]:
        """Upload-Limit (a Structured Fields dictionary), for the versions that have it."""
        if self.age_key is None:
            return {}
        members = [f"max-size={max_size}", "min-size=0"]
        if expires_at is not None:
            remaining = int((expires_at - dt.datetime.now(dt.UTC)).total_seconds())
            members.append(f"{self.age_key}={max(remaining, 0)}")
        return {"Upload-Limit": ", ".join(members)}


_DRAFT_01_FIELDS = ("Upload-Offset", "Upload-Incomplete")
_DRAFT_02_FIELDS = ("Upload-Offset", "Upload-Complete")
_EARLY_PROBLEMS = ("mismatching-upload-offset", "completed-upload")
_PROBLEMS = _EARLY_PROBLEMS + ("inconsistent-upload-length",)
VERSIONS = {
    v.number: v
    for v in (
        Version(
            3,
            "-01",
            "Upload-Incomplete",
            True,
            None,
            False,
            None,
            (),
            201,
            _DRAFT_01_FIELDS,
            _DRAFT_01_FIELDS,
        ),
        Version(
            4, "-02", "Upload-Complete", False, None, False, None, (), 201, _DRAFT_02_FIELDS, _DRAFT_02_FIELDS
        ),
        Version(
            5, "-03", "Upload-Complete", False, None, False, None, (), 201, _DRAFT_02_FIELDS, _DRAFT_02_FIELDS
        ),
        Version(
            6,
            "-04/-05",
            "Upload-Complete",
            False,
            PARTIAL_UPLOAD,
            True,
            "expires",
            _EARLY_PROBLEMS,
            201,
            _DRAFT_02_FIELDS + ("Upload-Length",),
            _DRAFT_02_FIELDS,
        ),
        Version(7, "-06 to -08", "Upload-Complete", False, PARTIAL_UPLOAD, True, "max-age", _PROBLEMS, 204),
        Version(8, "-09 to -12", "Upload-Complete", None, PARTIAL_UPLOAD, True, "max-age", _PROBLEMS, 204),
    )
}


def is_ietf(headers: Mapping[str, str]) -> bool:
    """An IETF request: an interop version and no Tus-Resumable (tus takes everything else)."""
    return INTEROP in headers and "Tus-Resumable" not in headers


def version(headers: Mapping[str, str]) -> Version:
    raw = headers.get(INTEROP, "").strip()
    found = VERSIONS.get(int(raw)) if raw.isdigit() and len(raw) < 4 else None
    if found is None:
        raise errors.BAD_REQUEST(
            f"{INTEROP} {raw[:20]!r} is not supported: this server speaks interop versions "
            f"{min(VERSIONS)} to {max(VERSIONS)}, or tus with Tus-Resumable: 1.0.0"
        )
    return found


def sf_boolean(value: str | None) -> bool | None:
    """A Structured Fields Boolean (?1 / ?0); anything else is ignored, as the drafts say."""
    return {"?1": True, "?0": False}.get((value or "").strip())


def problem(v: Version, exc: errors.ServiceError, provided_offset: str | None) -> dict | None:
    """The RFC 9457 body for an error, or None for plain text. A 409 is a problem in every
    version: typed from 6 on, `about:blank` before (those drafts define no type)."""
    name, title = PROBLEMS.get(exc.spec, (None, None))
    if name is None or name not in v.problems:
        if exc.spec is errors.OFFSET_MISMATCH:
            return {"type": "about:blank", "title": "Conflict", "detail": exc.message}
        return None
    body: dict[str, str | int | None] = {"type": PROBLEM_TYPES + name, "title": title, "detail": exc.message}
    if exc.spec is errors.OFFSET_MISMATCH:
        body["expected-offset"] = int(exc.headers["Upload-Offset"])
        if provided_offset is not None and provided_offset.strip().isdigit():
            body["provided-offset"] = int(provided_offset)
    return body
