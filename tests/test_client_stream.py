"""The CLI's request body from a file: sendfile on a plain socket (every CLI test), and block by
block where sendfile cannot go (TLS), checked here with a writer that keeps what it is given."""

from __future__ import annotations

import os

from omr_tus.client.stream import BLOCK, FileSlice


class TlsWriter:
    """What aiohttp's writer looks like on a TLS connection, for the body's point of view."""

    class Transport:
        def get_extra_info(self, name):
            return object() if name == "sslcontext" else None

    def __init__(self):
        self.transport = self.Transport()
        self.data = bytearray()

    async def write(self, chunk) -> None:
        self.data += chunk


async def test_a_slice_over_tls_is_read_block_by_block(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(2 * BLOCK + 12345)
    path.write_bytes(data)
    sent: list[int] = []
    body = FileSlice(path, 1000, len(data) - 2000, sent.append)
    writer = TlsWriter()
    assert not FileSlice.kernel_copy(writer)
    await body.write(writer)
    assert bytes(writer.data) == data[1000:-1000]
    assert sum(sent) == len(data) - 2000 and len(sent) == 3  # the progress bar moves per block
