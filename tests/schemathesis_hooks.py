"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/test_schemathesis.py: how to send a tus
PATCH body, a media type schemathesis has no serializer for."""

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def offset_stream(ctx, value):
    """The generated value as the raw body: bytes as they are, anything else as its text."""
    return value if isinstance(value, bytes) else str(value).encode()
