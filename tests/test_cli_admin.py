"""The admin's client commands against a live server: `omr-tus tasks create --from` an
OMRChecker folder (OMRChecker's own samples: inline key, marker image, answer_key.csv),
`tasks list|show`, and `omr-tus users ...` over the API. The server's database is the judge."""

from __future__ import annotations

import shutil

import pytest

from omr_tus import auth
from omr_tus.http.keys import REPO

from .conftest import PASSWORD, missing_part, omr_samples
from .live import live  # noqa: F401  (a fixture)
from .test_cli_client import Cli


@pytest.fixture
async def admin(live, tmp_path) -> Cli:
    await auth.create_user(live.server.app[REPO], "root", PASSWORD, admin=True)
    cli = Cli(live, tmp_path / "config")
    result = await cli("login", "--server", cli.server, "--username", "root", stdin=PASSWORD.encode() + b"\n")
    assert result.code == 0, result
    return cli


def samples():
    return omr_samples() or missing_part("the shared OMR samples are not here (set OMR_TUS_SAMPLES)")


@pytest.mark.parametrize(
    "folder, task_id, assets, key",
    [
        ("sample4", "40000001", set(), True),  # config.json and an evaluation.json with the key inline
        ("sample1", "10000001", {"omr_marker.jpg"}, False),  # CropOnMarkers' marker image
        ("answer-key/using-csv", "20000001", {"answer_key.csv"}, True),
    ],
)
async def test_tasks_create_from_an_omrchecker_folder(live, admin, folder, task_id, assets, key):
    source = samples() / folder
    result = await admin("tasks", "create", "--task-id", task_id, "--name", folder, "--from", str(source))
    assert result.code == 0, result
    repo = live.server.app[REPO]
    row = await repo.task(task_id)
    assert row.name == folder and (row.answer_key is not None) == key
    assert (row.config is not None) == (source / "config.json").is_file()
    stored = await repo.task_assets(task_id)
    assert set(stored) == assets
    for name in assets:
        assert stored[name] == (source / name).read_bytes()
    assert f"task_id:       {task_id}" in result.out

    again = await admin("tasks", "create", "--task-id", task_id, "--from", str(source))
    assert again.code == 1 and "409" in again.err and "already exists" in again.err
    replaced = await admin(
        "tasks", "create", "--task-id", task_id, "--name", "New", "--from", str(source), "--replace"
    )
    assert replaced.code == 0, replaced
    assert (await repo.task(task_id)).name == "New"


async def test_a_named_file_missing_from_the_folder_is_refused_by_name(admin, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(samples() / "answer-key" / "using-csv", folder)
    (folder / "answer_key.csv").unlink()
    result = await admin("tasks", "create", "--task-id", "20000002", "--from", str(folder))
    assert result.code == 1 and "answer_key.csv" in result.err
    empty = await admin("tasks", "create", "--task-id", "20000002", "--from", str(tmp_path / "nothing"))
    assert empty.code == 1 and "no template.json" in empty.err


async def test_tasks_list_and_show(admin):
    assert (await admin("tasks", "list")).out.strip() == "no tasks"
    source = samples() / "answer-key" / "using-csv"
    for task_id in ("20000001", "20000003"):
        assert (await admin("tasks", "create", "--task-id", task_id, "--from", str(source))).code == 0
    listed = (await admin("tasks", "list")).out.splitlines()
    assert listed[0].split() == ["TASK", "NAME", "CREATED", "UPDATED"]
    assert sorted(line.split()[0] for line in listed[1:]) == ["20000001", "20000003"]
    shown = await admin("tasks", "show", "20000001")
    assert "answer key:    yes" in shown.out and "asset:         answer_key.csv" in shown.out
    missing = await admin("tasks", "show", "99999999")
    assert missing.code == 1 and "404" in missing.err


async def test_users_over_the_api(live, admin):
    created = await admin(
        "users", "create", "clerk", "--remote", "--quota", "2G", stdin=b"clerk password 1\n"
    )
    assert created.code == 0, created
    assert "quota 2,147.5 MB" in created.out
    listed = (await admin("users", "list")).out
    assert any(line.split()[1:4] == ["clerk", "user", "enabled"] for line in listed.splitlines())
    clerk = await live.server.app[REPO].user_by_name("clerk")
    assert clerk.quota_bytes == 2 * 1024**3

    refused = await admin("users", "role", "root", "user")
    assert refused.code == 1 and "409" in refused.err and "no enabled admin" in refused.err
    assert (await admin("users", "disable", "clerk")).code == 0
    assert (await live.server.app[REPO].user_by_name("clerk")).disabled_at is not None
    assert (await admin("users", "enable", "clerk")).code == 0
    assert (await admin("users", "role", "clerk", "admin")).code == 0
    assert (await admin("users", "quota", "clerk", "none")).code == 0
    row = await live.server.app[REPO].user_by_name("clerk")
    assert (row.disabled_at, row.role, row.quota_bytes) == (None, "admin", None)
    assert (await admin("users", "passwd", "clerk", "--remote", stdin=b"another secret\n")).code == 0
    assert auth.verify_password(
        "another secret", (await live.server.app[REPO].user_by_name("clerk")).password_hash
    )

    local = await admin("users", "create", "clerk2", "--quota", "1G", stdin=b"clerk password 2\n")
    assert local.code == 2 and "--quota goes over the API" in local.err  # server-side create has no quota
    nobody = await admin("users", "disable", "nobody")
    assert nobody.code == 1 and "no user 'nobody'" in nobody.err
    assert (await admin("users", "role", "root", "user")).code == 0  # clerk is an admin now
    assert (await live.server.app[REPO].user_by_name("root")).role == "user"


async def test_a_non_admin_is_told_so(live, tmp_path):
    cli = Cli(live, tmp_path / "config")
    await cli.login()  # alice, a user
    result = await cli("users", "list")
    assert result.code == 1 and "403" in result.err
