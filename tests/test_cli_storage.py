"""`omr-tus storage` over the API: the two stores and the users by usage, as the Storage page
shows them; a user who is not an admin is told so."""

from __future__ import annotations

from omr_tus.http.keys import SETTINGS

from .live import live  # noqa: F401  (a fixture)
from .test_cli_admin import admin  # noqa: F401  (a fixture)
from .test_cli_client import Cli


async def test_storage_prints_the_stores_and_the_users(live, admin):  # noqa: F811
    settings = live.server.app[SETTINGS]
    (settings.durable_dir / "a.bin").write_bytes(b"y" * 2_500_000)
    assert (await admin("users", "quota", "alice", "10M")).code == 0
    result = await admin("storage")
    assert result.code == 0, result
    stores, users = result.out.strip().split("\n\n")
    rows = [line.split() for line in stores.splitlines()]
    assert rows[0] == ["STORE", "WHERE", "FILES", "USED", "FREE"]
    assert rows[1][:2] == ["incoming", str(settings.store_dir)]
    durable = rows[2]
    assert durable[:2] == ["durable", str(settings.durable_dir)]
    assert durable[2] == str(sum(1 for p in settings.durable_dir.rglob("*") if p.is_file()))
    assert durable[3:5] == ["2.5", "MB"]
    lines = [line.split() for line in users.splitlines()]
    assert lines[0] == ["USERNAME", "USAGE", "QUOTA", "USED"]
    assert ["alice", "0.0", "MB", "10.5", "MB", "0%"] in lines and ["root", "0.0", "MB", "none", "-"] in lines


async def test_storage_is_for_admins(live, tmp_path):  # noqa: F811
    cli = Cli(live, tmp_path / "config")
    await cli.login()  # alice, a user
    result = await cli("storage")
    assert result.code == 1 and "403" in result.err and "admin" in result.err
