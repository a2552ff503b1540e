"""Contract details found by outside suites (issue 15): `is_final_chunk` other than true/false
is 400; tus metadata that is not UTF-8 is kept byte for byte; the store directory is this
user's alone."""

import base64
import os
import stat
from urllib.parse import urlsplit

import pytest

from omr_tus.store.local import LocalStore

from .test_legacy_chunks import send


@pytest.mark.parametrize("chunk_first", [True, False])
@pytest.mark.parametrize("flag", ["yes", "True", "1", ""])
async def test_is_final_chunk_other_than_true_or_false_is_400(api, flag, chunk_first):
    body = await send(
        api,
        b"x" * 10,
        status=400,
        chunk_first=chunk_first,
        chunk_index=0,
        total_chunks=1,
        filename="a.zip",
        upload_type="zip_with_qr",
        is_final_chunk=flag,
    )
    assert "is_final_chunk must be true or false" in body["detail"]


async def test_metadata_that_is_not_utf8_is_kept_byte_for_byte(api):
    blob = bytes([0xFF, 0xFE, 0x00, 0x80, 0xC3])  # not UTF-8, with a NUL
    raw = ",".join(
        [
            f"filename {base64.b64encode(b'a.zip').decode()}",
            f"upload_type {base64.b64encode(b'zip_with_qr').decode()}",
            f"blob {base64.b64encode(blob).decode()}",
            "flag",
        ]
    )
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "3", "Upload-Metadata": raw}))
    assert resp.status == 201, await resp.text()
    path = urlsplit(resp.headers["Location"]).path
    head = await api.head(path)
    assert head.headers["Upload-Metadata"] == raw
    sent = dict(pair.split(" ") for pair in head.headers["Upload-Metadata"].split(",") if " " in pair)
    assert base64.b64decode(sent["blob"]) == blob
    resp = await api.patch(path, 0, b"abc")
    assert (await api.batch(resp.headers["Batch-Id"]))["filename"] == "a.zip"


@pytest.mark.parametrize("key", ["filename", "upload_type", "task_id", "filetype"])
async def test_metadata_the_server_reads_must_still_be_text(api, key):
    raw = f"{key} {base64.b64encode(bytes([0xFF, 0x41])).decode()}"
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "3", "Upload-Metadata": raw}))
    assert resp.status == 400 and key in await resp.text()


def test_the_store_directory_is_created_for_this_user_only(tmp_path):
    os.umask(0o022)
    store = LocalStore(tmp_path / "shm" / "omr-tus")
    assert stat.S_IMODE(os.stat(store.directory).st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    LocalStore(loose)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700


def test_a_store_directory_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    planted = tmp_path / "planted"
    planted.mkdir()
    os.chown(planted, 65534, 65534)
    with pytest.raises(RuntimeError, match="belongs to user id 65534"):
        LocalStore(planted)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(RuntimeError, match="not a directory"):
        LocalStore(link)


async def test_a_bad_is_final_chunk_after_the_last_chunk_completes_nothing(api):
    """The flag may follow the chunk in the form: the chunk is stored, but the upload is not
    completed (no batch) when the request answers 400; sent again, it completes."""
    import aiohttp

    def last_chunk(flag: str, upload_id: str) -> aiohttp.FormData:
        data = aiohttp.FormData()
        for k, v in dict(chunk_index=1, total_chunks=2, upload_id=upload_id).items():
            data.add_field(k, str(v))
        data.add_field("chunk", b"y" * 10, filename="blob", content_type="application/octet-stream")
        data.add_field("is_final_chunk", flag)
        return data

    first = await send(
        api, b"x" * 10, chunk_index=0, total_chunks=2, filename="a.zip", upload_type="zip_with_qr"
    )
    resp = await api.client.post(
        "/api/batches/upload-chunk", data=last_chunk("maybe", first["upload_id"]), headers=api.auth("alice")
    )
    assert resp.status == 400
    assert (await api.get_json("/api/batches"))["batches"] == []
    resp = await api.client.post(
        "/api/batches/upload-chunk", data=last_chunk("true", first["upload_id"]), headers=api.auth("alice")
    )
    body = await resp.json()
    assert resp.status == 200 and body["is_complete"], body
    assert len((await api.get_json("/api/batches"))["batches"]) == 1
