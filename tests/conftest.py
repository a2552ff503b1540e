"""Fixtures: every test that uses `app` runs once on SQLite and once on PostgreSQL.

PostgreSQL comes from OMR_TUS_TEST_POSTGRES_URL (default: the local server's `test`
database). A part missing on this machine (PostgreSQL, Node.js, ...) makes the tests that
need it skip with a one-line reason, except under OMR_TUS_STRICT=1 (CI), where it fails them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from omr_tus import auth
from omr_tus.app import create_app
from omr_tus.config import Settings, async_url
from omr_tus.http.keys import REPO

from .helpers import Api

PG_URL = async_url(os.environ.get("OMR_TUS_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"))
STRICT = os.environ.get("OMR_TUS_STRICT") == "1"
PASSWORD = "correct horse battery"


def omr_samples() -> Path | None:
    """OMRChecker's public samples (shared/omr-samples beside the checkout, or OMR_TUS_SAMPLES)."""
    candidates = [
        os.environ.get("OMR_TUS_SAMPLES"),
        Path(__file__).resolve().parents[2] / "shared" / "omr-samples",
        "/work/shared/omr-samples",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


def missing_part(reason: str):
    """Skip for a part this machine lacks; in CI (OMR_TUS_STRICT=1) that is a failure."""
    if STRICT:
        pytest.fail(reason + " (OMR_TUS_STRICT=1: nothing may be skipped)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """scrypt at full cost is slow by design; tests only need it to be scrypt."""
    monkeypatch.setattr(auth, "SCRYPT", dict(n=2**8, r=8, p=1, dklen=32))


async def _pg_database() -> str:
    """A fresh database for this test session, so runs never see each other's rows."""
    name = f"omr_tus_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await asyncio.wait_for(conn.execute(text(f'CREATE DATABASE "{name}"')), 10)
    finally:
        await admin.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


async def _drop_pg_database(name: str) -> None:
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    try:
        url, name = asyncio.run(_pg_database())
    except Exception as exc:
        missing_part(f"PostgreSQL not reachable at {PG_URL} ({type(exc).__name__})")
    yield url
    asyncio.run(_drop_pg_database(name))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    url = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate(url))
    return url


async def _truncate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            exists = (await conn.execute(text("SELECT to_regclass('public.users')"))).scalar()
            if exists:
                await conn.execute(
                    text(
                        "TRUNCATE users, uploads, upload_chunks, upload_parts, batches, tasks, sheets, answers, login_failures, login_addresses, deletions RESTART IDENTITY CASCADE"
                    )
                )
    finally:
        await engine.dispose()


def make_settings(tmp_path, database_url, **overrides) -> Settings:
    values = dict(
        data_dir=str(tmp_path / "data"),
        store_dir=str(tmp_path / "store"),
        database_url=database_url,
        janitor_interval=3600,
        secret_key="test-secret-" + "x" * 32,
        cors_origins="*",
        workers=0,
    )
    values.update(overrides)
    return Settings.load(env={}, **values)


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def users_and_tokens(client) -> Api:
    """alice and bob (users) and root (admin), each with a token."""
    repo = client.app[REPO]
    api = Api(client)
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        await auth.create_user(repo, name, PASSWORD, admin=admin)
        await api.login(name, PASSWORD)
    return api


@pytest.fixture
async def api(client):
    return await users_and_tokens(client)


@pytest.fixture
def api_with(aiohttp_client, tmp_path, database_url):
    """An `api` on a server with other settings: `await api_with(idle_timeout=0.3)`."""

    async def make(**overrides) -> Api:
        client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, **overrides)))
        return await users_and_tokens(client)

    return make


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server (SeaweedFS) on loopback for the whole session."""
    from .services import SeaweedFS

    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        missing_part(f"no S3 server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def s3_overrides(seaweedfs):
    """Settings for the S3 store under a key prefix of this test's own."""
    return seaweedfs.settings(prefix=f"t{secrets.token_hex(4)}/")
