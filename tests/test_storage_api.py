"""GET /api/storage: the incoming store and the durable directory measured (files, their bytes,
the file system's free space), a capped walk saying so, the users by usage with their quota;
admins only."""

from __future__ import annotations

import os

import pytest

from omr_tus.api.storage import measure
from omr_tus.http.keys import SETTINGS

from .test_users_admin import patch_user


def tree(directory) -> tuple[int, int]:
    """(files, bytes) under the directory, walked independently of the server's code."""
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(directory) for f in names]
    return len(sizes), sum(sizes)


async def test_storage_figures_match_the_files_in_the_directories(api):
    settings = api.client.app[SETTINGS]
    path = await api.create(5000)
    assert (await api.patch(path, 0, b"x" * 3000)).status == 204
    (settings.durable_dir / "extra").mkdir(parents=True, exist_ok=True)
    (settings.durable_dir / "extra" / "a.bin").write_bytes(b"y" * 1234)
    figures = await api.get_json("/api/storage", "root")

    incoming, durable = figures["incoming"], figures["durable"]
    assert incoming["path"] == str(settings.store_dir) and durable["path"] == str(settings.durable_dir)
    for store, directory in ((incoming, settings.store_dir), (durable, settings.durable_dir)):
        assert (store["files"], store["used_bytes"]) == tree(directory)
        assert store["kind"] == "directory" and store["truncated"] is False
        stat = os.statvfs(directory)
        assert 0 < store["free_bytes"] <= store["total_bytes"] == stat.f_blocks * stat.f_frsize
    assert incoming["used_bytes"] >= 3000 and durable["used_bytes"] >= 1234


async def test_storage_lists_users_by_usage_with_their_quota(api):
    await patch_user(api, "bob", {"quota_bytes": 10_000})
    for user, size in (("bob", 700), ("alice", 300)):
        path = await api.create(size, user=user)
        assert (await api.patch(path, 0, b"x" * size, user=user)).status == 204
    users = (await api.get_json("/api/storage", "root"))["users"]
    assert [(u["username"], u["usage_bytes"], u["quota_bytes"]) for u in users] == [
        ("bob", 700, 10_000),
        ("alice", 300, None),
        ("root", 0, None),
    ]
    me = await api.get_json("/api/me", "bob")
    assert (me["usage_bytes"], me["quota_bytes"]) == (700, 10_000)


async def test_storage_is_for_admins(api):
    resp = await api.client.get("/api/storage", headers=api.auth("alice"))
    assert resp.status == 403 and "admin" in (await resp.json())["detail"]
    assert (await api.client.get("/api/storage")).status == 401


def test_a_capped_walk_says_it_stopped(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.bin").write_bytes(b"z" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.bin").write_bytes(b"z" * 5)
    whole = measure(tmp_path)
    assert (whole["files"], whole["used_bytes"], whole["truncated"]) == (4, 35, False)
    capped = measure(tmp_path, limit=2)
    assert (capped["files"], capped["used_bytes"], capped["truncated"]) == (2, 20, True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_bucket_is_named_not_measured(api_with, s3_overrides, tmp_path):
    api = await api_with(**s3_overrides)
    figures = await api.get_json("/api/storage", "root")
    assert figures["incoming"] == {
        "kind": "bucket",
        "bucket": s3_overrides["s3_bucket"],
        "prefix": s3_overrides["s3_prefix"],
    }
    assert figures["durable"]["kind"] == "directory"
