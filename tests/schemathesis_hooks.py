"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in tests/test_schemathesis.py: how to send a tus
PATCH body, a media type schemathesis has no serializer for, and which user the user
administration may change."""

import os

import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def offset_stream(ctx, value):
    """The generated value as the raw body: bytes as they are, anything else as its text."""
    return value if isinstance(value, bytes) else str(value).encode()


@schemathesis.hook
def map_path_parameters(ctx, parameters):
    """PATCH /api/users/{user_id} changes the user the test made for it (its id in
    OMR_TUS_SCHEMATHESIS_USER_ID), never the admin whose token runs the test: a new password or
    disabling would revoke that token, and every later request would be a 401."""
    if ctx.operation is not None and ctx.operation.path == "/api/users/{user_id}" and parameters:
        parameters["user_id"] = int(os.environ["OMR_TUS_SCHEMATHESIS_USER_ID"])
    return parameters
