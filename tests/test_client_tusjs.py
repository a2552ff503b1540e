"""tus-js-client (in Node) against a live server, on SQLite and PostgreSQL.

Each test runs tests/js/upload.mjs as a subprocess of the test's event loop, so the
server keeps serving while Node uploads; the script prints one JSON line with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .conftest import missing_part
from .live import MiB, live, random_file, upload_id_of  # noqa: F401  (live is a fixture)

JS = Path(__file__).parent / "js"
TIMEOUT = 90  # seconds for one script run, a little above the script's own limit


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None:
        missing_part("Node.js (node) is not on PATH; tus-js-client tests need it")
    if not (JS / "node_modules" / "tus-js-client").is_dir():
        missing_part("tests/js/node_modules is missing; run `npm ci --prefix tests/js` (./dev test does)")
    return node


async def run_upload(node: str, live, path: Path, **options) -> dict:
    options.setdefault("timeoutMs", (TIMEOUT - 10) * 1000)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS / "upload.mjs"),
        live.endpoint,
        live.token,
        str(path),
        json.dumps(options),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"upload.mjs did not finish in {TIMEOUT}s")
    lines = stdout.decode().strip().splitlines()
    assert lines, f"upload.mjs printed nothing (exit {proc.returncode}): {stderr.decode()[-2000:]}"
    result = json.loads(lines[-1])
    print("upload.mjs:", json.dumps(result))  # shown when the test fails
    assert proc.returncode == 0 and result["ok"], (
        proc.returncode,
        result.get("error"),
        stderr.decode()[-2000:],
    )
    return result


async def test_plain_upload(node, live, tmp_path):
    size = 5 * MiB + 4321
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=11)

    result = await run_upload(
        node, live, path, chunkSize=MiB, metadata={"upload_type": "zip_with_qr", "filename": "scan.zip"}
    )

    upload_id = upload_id_of(result["url"])
    assert [(p["offset"], p["status"]) for p in result["patches"]] == [(i * MiB, 204) for i in range(6)]
    assert [(p.offset, p.length) for p in live.patches_for(upload_id)] == [
        (i * MiB, min(MiB, size - i * MiB)) for i in range(6)
    ]
    assert result["bytesAccepted"] == size
    assert result["batchIds"] == [result["batchId"]] and result["batchId"], (
        "want one Batch-Id, on the last PATCH"
    )
    batch = await live.batch(upload_id)
    assert batch["batch_id"] == result["batchId"]
    assert (batch["sha256"], batch["size"], batch["filename"]) == (digest, size, "scan.zip")


@pytest.mark.parametrize(
    "tus_options,source",
    [
        pytest.param({"uploadDataDuringCreation": True}, "file", id="creation-with-upload"),
        # tus-js-client 4 cannot defer the length of an fs.ReadStream: its FileSource never reports
        # the last slice as done, so it never sends Upload-Length and declares a full chunk's
        # Content-Length for the short last one. A Buffer source works.
        pytest.param({"uploadLengthDeferred": True}, "buffer", id="defer-length"),
        pytest.param({"overridePatchMethod": True}, "file", id="method-override"),
        pytest.param({"parallelUploads": 4}, "file", id="parallel-concatenation"),
    ],
)
async def test_client_options(node, live, tmp_path, tus_options, source):
    """The protocol extensions tus-js-client can be asked to use, each end to end."""
    size = 3 * MiB + 999
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=14)

    result = await run_upload(
        node,
        live,
        path,
        chunkSize=MiB,
        metadata={"upload_type": "zip_with_qr", "filename": "scan.zip"},
        source=source,
        tusOptions=tus_options,
    )

    upload_id = upload_id_of(result["url"])
    assert len(result["batchIds"]) == 1, result["batchIds"]
    if "uploadDataDuringCreation" in tus_options:  # the first MiB came with the POST
        assert live.patches_for(upload_id)[0].offset == MiB
    if "parallelUploads" in tus_options:  # the final upload was assembled, never patched
        assert live.patches_for(upload_id) == []
        partials = {p.upload_id for p in live.patches}
        assert len(partials) == tus_options["parallelUploads"]
        assert sum(p.length for p in live.patches) == size  # every byte sent once, in some partial
    batch = await live.batch(upload_id)
    assert batch["batch_id"] == result["batchId"]
    assert (batch["sha256"], batch["size"], batch["filename"]) == (digest, size, "scan.zip")


@pytest.mark.parametrize("source,resume_with", [("file", "previous"), ("buffer", "uploadUrl")])
async def test_abort_after_two_chunks_then_resume(node, live, tmp_path, source, resume_with):
    size = 5 * MiB
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=12)

    result = await run_upload(
        node, live, path, chunkSize=MiB, source=source, abortAfterBytes=2 * MiB, resumeWith=resume_with
    )

    url = result["url"]
    upload_id = upload_id_of(url)
    assert result["uploadUrls"] == [url, url], "the second Upload created a new upload instead of resuming"
    assert result["resume"] == {"offset": 2 * MiB}
    assert [(p["upload"], p["offset"]) for p in result["patches"]] == [
        (1, 0),
        (1, MiB),
        (2, 2 * MiB),
        (2, 3 * MiB),
        (2, 4 * MiB),
    ]
    server_saw = live.patches_for(upload_id)
    assert [p.offset for p in server_saw] == [0, MiB, 2 * MiB, 3 * MiB, 4 * MiB]
    assert sum(p.length for p in server_saw) == size == result["bytesAccepted"]  # every byte sent once
    batch = await live.batch(upload_id)
    assert batch["batch_id"] == result["batchId"]
    assert (batch["sha256"], batch["size"]) == (digest, size)


async def test_abort_mid_chunk_then_resume(node, live, tmp_path):
    """The connection drops inside a PATCH body: the server keeps what arrived (or a prefix of
    it), reports that offset, and the new Upload continues from there."""
    size = 4 * MiB
    path = tmp_path / "scan.zip"
    digest = random_file(path, size, seed=13)

    result = await run_upload(
        node,
        live,
        path,
        chunkSize=2 * MiB,
        abortMidChunkAt=3 * MiB,
        resumeWith="previous",
        retryDelays=[100, 300, 1000],
    )

    url = result["url"]
    upload_id = upload_id_of(url)
    assert result["uploadUrls"] == [url, url]
    resumed_at = result["resume"]["offset"]  # what the new Upload's HEAD said
    assert 2 * MiB <= resumed_at < size
    second = [p for p in result["patches"] if p["upload"] == 2]
    assert second and second[0]["offset"] == resumed_at
    # Should the HEAD have raced the server still taking in the dropped body, the PATCH gets 409
    # and tus-js-client asks again; nothing else may go wrong.
    assert all(p["status"] in (204, 409) for p in second), second
    accepted = [p for p in second if p["status"] == 204]
    assert accepted[-1]["newOffset"] == size
    continued_from = accepted[0]["offset"]
    assert continued_from >= resumed_at
    assert result["bytesAccepted"] == 2 * MiB + (
        size - continued_from
    )  # nothing the server kept was sent again
    batch = await live.batch(upload_id)
    assert (batch["sha256"], batch["size"]) == (digest, size)
