"""Whole-file digests a client declares when it creates an upload, checked at completion
against the durable copy: `Repr-Digest` (RFC 9530: sha-256, sha-512) on IETF uploads, the
`sha256` key of tus' Upload-Metadata and the `sha256` form field of the legacy API. They are
kept, as lower-case hex, in the upload's metadata under the keys of DECLARED."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

from .. import errors

DECLARED = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "sha512": re.compile(r"^[0-9a-f]{128}$")}
# RFC 9530 algorithm keys this server verifies; any other key may be ignored (section 3).
_REPR_KEYS = {"sha-256": "sha256", "sha-512": "sha512"}
_MEMBER = re.compile(r"^([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/=]*):(;.*)?$")


def checked_hex(algorithm: str, value: str, source: str) -> str:
    """A declared hex digest, normalised to lower case; 400 when it is not one."""
    hexed = value.strip().lower()
    if not _HEX[algorithm].match(hexed):
        digits = 2 * DECLARED[algorithm]().digest_size
        raise errors.BAD_REQUEST(
            f"{source} must be the file's {algorithm} as {digits} hexadecimal digits, got {value[:140]!r}"
        )
    return hexed


def repr_digest(value: str | None) -> dict[str, str]:
    """The sha-256 / sha-512 members of a Repr-Digest field as hex; other algorithms are
    ignored, a malformed field or a digest of the wrong length is a 400."""
    if value is None or not value.strip():
        return {}
    found: dict[str, str] = {}
    for member in value.split(","):
        match = _MEMBER.match(member.strip())
        if match is None:
            raise errors.BAD_REQUEST(
                f"Repr-Digest member {member.strip()[:80]!r} is not 'algorithm=:base64:'"
            )
        key, encoded = match.group(1), match.group(2)
        if key not in _REPR_KEYS:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise errors.BAD_REQUEST(f"Repr-Digest {key} is not valid base64") from None
        algorithm = _REPR_KEYS[key]
        if len(raw) != DECLARED[algorithm]().digest_size:
            raise errors.BAD_REQUEST(
                f"Repr-Digest {key} has {len(raw)} bytes; a {key} digest has "
                f"{DECLARED[algorithm]().digest_size}"
            )
        found[algorithm] = raw.hex()
    return found


def declared(metadata: Mapping[str, str]) -> dict[str, str]:
    """The digests an upload's metadata declares (validated when the upload was created)."""
    return {alg: metadata[alg] for alg in DECLARED if metadata.get(alg)}


def mismatch(expected: Mapping[str, str], actual: Mapping[str, str]) -> str | None:
    """What differs between the declared digests and the file's, for the error message."""
    for algorithm, value in expected.items():
        if actual.get(algorithm) != value:
            return (
                f"the file's {algorithm} is {actual.get(algorithm)}, but {value} was declared when the "
                f"upload was created"
            )
    return None


def checked_metadata(metadata: dict[str, str], source: str = "Upload-Metadata") -> dict[str, str]:
    """The metadata with its declared digests (keys sha256, sha512) checked and normalised."""
    for algorithm in DECLARED:
        if algorithm in metadata:
            metadata[algorithm] = checked_hex(algorithm, metadata[algorithm], f"{source} {algorithm}")
    return metadata


def merged(metadata: dict[str, str], extra: Mapping[str, str], source: str) -> dict[str, str]:
    """Digests from another field (Repr-Digest) added to the metadata's; a disagreement is a 400."""
    for algorithm, value in extra.items():
        if metadata.get(algorithm, value) != value:
            raise errors.BAD_REQUEST(f"{source} {algorithm} and Upload-Metadata {algorithm} differ")
        metadata[algorithm] = value
    return metadata
