"""OPTIONS /files/: capability discovery, no auth and no Tus-Resumable needed."""

import pytest

from omr_tus.http.keys import STORE
from omr_tus.tus.handlers import extensions


@pytest.mark.parametrize("path", ["/files/", "/files"])
async def test_options_advertises_capabilities(client, path):
    resp = await client.options(path)
    assert resp.status == 200
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert resp.headers["Tus-Max-Size"] == str(64 * 1024**3)
    extensions = resp.headers["Tus-Extension"].split(",")
    for ext in (
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "termination",
    ):
        assert ext in extensions
    assert {"sha1", "md5", "sha256", "crc32"} <= set(resp.headers["Tus-Checksum-Algorithm"].split(","))


async def test_extensions_follow_store_capabilities(client):
    """A store that cannot truncate cannot take back a body whose checksum failed."""

    class AppendOnly:
        async def create(self, upload_id): ...

    assert "checksum" not in extensions(AppendOnly())
    assert "checksum" in extensions(client.app[STORE])
