"""The streaming form reader: parts come out right wherever the received chunks split,
and a malformed body is a 400, never a hang or a 5xx."""

import os

import pytest

from omr_tus.errors import ServiceError
from omr_tus.http.multipart import FormReader

BOUNDARY = "----formBoundaryX7"


async def pieces(data: bytes, cuts: list[int]):
    """The body as received blocks, cut where told (what omr_tus.http.body.blocks hands out)."""
    edges = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for a, b in zip(edges, edges[1:]):
        if b > a:
            yield data[a:b]


def body(fields: list[tuple[str, bytes, str | None]], preamble=b"", padding=b"") -> bytes:
    out = preamble
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += (
            f"--{BOUNDARY}".encode()
            + padding
            + b"\r\n"
            + f"Content-Disposition: {disposition}\r\n\r\n".encode()
            + value
            + b"\r\n"
        )
    return out + f"--{BOUNDARY}--\r\n".encode()


async def parse(data: bytes, cuts: list[int]) -> list[tuple[str, bytes, str | None]]:
    parts = []
    async for part in FormReader(pieces(data, cuts), BOUNDARY).parts():
        value = b"".join([bytes(b) async for b in part.blocks()])
        parts.append((part.name, value, part.filename))
    return parts


FILE = os.urandom(3000) + b"\r\n--" + BOUNDARY[:-1].encode() + os.urandom(500)  # a near-delimiter inside
FIELDS = [("chunk_index", b"3", None), ("chunk", FILE, "blob.bin"), ("upload_type", b"zip_with_qr", None)]


@pytest.mark.parametrize("step", [1, 7, 64, 1000, 10**6])
async def test_any_chunking(step):
    data = body(FIELDS, preamble=b"ignored preamble\r\n", padding=b"  ")
    assert await parse(data, list(range(step, len(data), step))) == FIELDS


async def test_every_cut_around_the_delimiters():
    data = body(FIELDS)
    seam = data.index(b"\r\n--" + BOUNDARY.encode(), 100)
    for cut in range(seam - 30, seam + 30):
        assert await parse(data, [cut]) == FIELDS


@pytest.mark.parametrize(
    "data,message",
    [
        (body(FIELDS)[:-40], "the body ended"),
        (body(FIELDS)[:2000], "ended inside a part"),
        (f"--{BOUNDARY}\r\nX-Other: 1\r\n\r\nvalue\r\n--{BOUNDARY}--".encode(), "no Content-Disposition"),
        (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--{BOUNDARY}--".encode(),
            "needs a name",
        ),
        (f"--{BOUNDARY}\r\n".encode() + b"X: " + b"y" * 20000, "part headers longer"),
        (f"--{BOUNDARY}junk\r\n".encode(), "unexpected bytes after a boundary"),
        (b"no boundary at all", "ended inside a part"),
        (b"p" * (64 * 1024 + 1) + body(FIELDS), "before the first boundary"),
    ],
)
async def test_malformed_bodies(data, message):
    with pytest.raises(ServiceError, match=message) as info:
        await parse(data, [5, 50, 500])
    assert info.value.status == 400
