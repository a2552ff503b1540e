"""Upload ids are unguessable, metadata cannot reach a response header raw, file names are
sanitized on disk and in Content-Disposition, and no token or password is ever logged."""

from __future__ import annotations

import logging
import re

from omr_tus.http.keys import SETTINGS

from .conftest import PASSWORD


async def test_upload_ids_carry_128_random_bits(api):
    ids = set()
    for _ in range(64):
        ids.add((await api.create(10)).rstrip("/").rsplit("/", 1)[-1])
    assert len(ids) == 64 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)  # 32 hex digits = 128 bits
    assert len({i[:8] for i in ids}) == 64  # not a counter or a timestamp in disguise


async def test_metadata_cannot_inject_headers_and_names_are_sanitized(api):
    name = 'evil"\r\nSet-Cookie: stolen=1\r\n../../etc/passwd.zip'
    path = await api.create(5, {"filename": name, "filetype": "text/html\r\nSet-Cookie: x=1"})
    assert (await api.patch(path, 0, b"hello")).status == 204
    resp = await api.client.get(path, headers=api.tus())
    assert resp.status == 200 and await resp.read() == b"hello"
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Content-Type"].startswith("application/octet-stream")  # not the odd filetype
    disposition = resp.headers["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "/" not in disposition.split(";")[1]
    batch = (await api.get_json(f"/api/batches?upload_id={path.rstrip('/').rsplit('/', 1)[-1]}"))["batches"][
        0
    ]
    assert "/" not in batch["filename"] and "\n" not in batch["filename"]
    settings = api.client.app[SETTINGS]
    for folder in (settings.store_dir, settings.durable_dir):  # on disk, files are named by id only
        if folder.exists():  # (a durable copy being made has a temporary name made of the id too)
            assert all(
                re.fullmatch(r"[0-9a-f]{32}(\.[0-9a-f]{16}\.part)?", p.name)
                for p in folder.iterdir()
                if p.is_file()
            ), folder


async def test_no_token_or_password_in_logs(api, caplog):
    caplog.set_level(logging.DEBUG)
    token = await api.login("alice", PASSWORD)
    path = await api.create(4)
    await api.patch(path, 0, b"data")
    await api.client.post("/api/auth/login", data={"username": "alice", "password": "a wrong secret"})
    await api.client.get("/api/batches", headers={"Authorization": "Bearer " + token[:-2] + "xx"})
    text = "\n".join(r.getMessage() + " " + str(r.args) for r in caplog.records)
    assert caplog.records  # the requests above were logged
    for secret in (token, token.split(".")[-1], PASSWORD, "a wrong secret"):
        assert secret not in text
