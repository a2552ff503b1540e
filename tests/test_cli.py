"""The omr-tus command as a user runs it: migrate, users create, serve."""

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from omr_tus.config import Settings
from omr_tus.db.migrate import alembic_config

from .helpers import eventually

CLI = [sys.executable, "-m", "omr_tus"]


def env_for(tmp_path, database_url, **extra):
    return {
        **os.environ,
        "OMR_TUS_DATA_DIR": str(tmp_path / "data"),
        "OMR_TUS_STORE_DIR": str(tmp_path / "store"),
        "OMR_TUS_DATABASE_URL": database_url,
        **extra,
    }


async def run(args, env, stdin: bytes | None = None, timeout: float = 60):
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return proc.returncode, out.decode(), err.decode()


async def test_concurrent_migrations_and_user_creation(tmp_path, database_url):
    env = env_for(tmp_path, database_url)
    results = await asyncio.gather(*(run(["migrate"], env) for _ in range(3)))
    assert all(code == 0 for code, _, _ in results), results
    engine = create_async_engine(Settings.load(env={"OMR_TUS_DATABASE_URL": database_url}).database_url)
    async with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == head
    await engine.dispose()
    code, out, err = await run(["users", "create", "carol", "--admin"], env, b"a long password\n")
    assert code == 0, err
    assert "carol created (admin)" in out
    code, _, err = await run(["users", "create", "carol"], env, b"a long password\n")
    assert code == 2 and "already exists" in err
    code, _, err = await run(["users", "create", "dave"], env, b"short\n")
    assert code == 2 and "at least 8 characters" in err


async def test_serve_starts_with_admin_from_environment(tmp_path, database_url, unused_tcp_port):
    env = env_for(tmp_path, database_url, OMR_TUS_ADMIN_PASSWORD="bootstrap password")
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(unused_tcp_port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def health() -> int:
                async with session.get(base + "/healthz") as resp:
                    return resp.status

            await eventually(health, lambda status: status == 200, retry_on=(aiohttp.ClientConnectionError,))
            async with session.post(
                base + "/api/auth/login", data={"username": "admin", "password": "bootstrap password"}
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["token_type"] == "bearer"
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()[-2000:]


def test_settings_from_environment(tmp_path):
    s = Settings.load(
        env={
            "OMR_TUS_DATA_DIR": str(tmp_path),
            "OMR_TUS_MAX_UPLOAD_SIZE": "1024",
            "OMR_TUS_CORS_ORIGINS": "https://a.org, https://b.org",
            "OMR_TUS_TOKEN_TTL": "60",
            "OMR_TUS_DATABASE_URL": "postgresql://u@h/db",
            "OMR_TUS_TRUST_PROXY_HEADERS": "false",
        }
    )
    assert s.max_upload_size == 1024
    assert s.cors_origins == ("https://a.org", "https://b.org")
    assert s.token_ttl == 60
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    assert s.trust_proxy_headers is False
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert Settings.load(env={"OMR_TUS_DATA_DIR": str(tmp_path)}).secret_key == s.secret_key


def test_defaults(tmp_path):
    s = Settings.load(env={"OMR_TUS_DATA_DIR": str(tmp_path)})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.max_upload_size == 64 * 1024**3
    assert s.upload_expiry == 24 * 3600
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'omr-tus.db'}"
    if os.access("/dev/shm", os.W_OK):
        assert str(s.store_dir) == "/dev/shm/omr-tus"
    else:
        pytest.skip("/dev/shm is not writable here")


async def test_sheets_render_reads_back(tmp_path, database_url):
    """Printed sheets carry the QR and bubbles where the template puts them: the reader agrees."""
    import json

    import pypdfium2

    from omr_tus.omr.reader import read_sheet
    from omr_tus.omr.template import Template

    env = env_for(tmp_path, database_url)
    template = json.loads(
        (Path(__file__).resolve().parents[1] / "config/templates/quiz-20-mcq5.json").read_text()
    )
    await run(["migrate"], env)
    engine = create_async_engine(Settings.load(env={"OMR_TUS_DATABASE_URL": database_url}).database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO tasks (task_id, name, template, created_at, updated_at) VALUES "
                "('12345678', 'Quiz', :t, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"t": json.dumps(template)},
        )
    await engine.dispose()
    (tmp_path / "students.csv").write_text("student_id\n2025-0042\n007\n")
    code, out, err = await run(
        [
            "sheets",
            "render",
            "--task",
            "12345678",
            "--students",
            str(tmp_path / "students.csv"),
            "--out",
            str(tmp_path / "sheets.pdf"),
        ],
        env,
    )
    assert code == 0, err
    assert "rendered 2/2 sheets" in out
    pdf = pypdfium2.PdfDocument(str(tmp_path / "sheets.pdf"))
    assert len(pdf) == 2
    page = pdf[1].render(scale=200 / 72, grayscale=True).to_numpy()
    result = read_sheet(page, Template.parse(template))
    assert result.qr_payload == "OMR:12345678:007" and result.status != "failed"
    assert all(
        value == "" or "blank" in result.flags.get(column, []) for column, value in result.answers.items()
    )
    pdf.close()
    code, _, err = await run(
        [
            "sheets",
            "render",
            "--task",
            "87654321",
            "--students",
            str(tmp_path / "students.csv"),
            "--out",
            str(tmp_path / "x.pdf"),
        ],
        env,
    )
    assert code == 2 and "not registered" in err


async def test_the_app_tests_run_is_the_served_one(aiohttp_client, tmp_path, database_url, monkeypatch):
    """create_app() wires what `omr-tus serve` runs: the first admin from the environment, and
    OMR worker processes (settings.workers) that read the batches of its uploads."""
    import io
    import zipfile

    from omr_tus.app import create_app
    from omr_tus.http.keys import SETTINGS

    from .conftest import make_settings

    env = env_for(tmp_path, database_url, OMR_TUS_ADMIN_PASSWORD="bootstrap password", OMR_TUS_WORKERS="1")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the worker processes read their settings from it, as served
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, workers=1)))
    assert client.app[SETTINGS].workers == 1
    resp = await client.post("/api/auth/login", data={"username": "admin", "password": "bootstrap password"})
    assert resp.status == 200
    auth = {"Authorization": "Bearer " + (await resp.json())["access_token"]}
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("notes.txt", "no sheets here")
    form = aiohttp.FormData()
    form.add_field("upload_type", "zip_with_qr")
    form.add_field("file", archive.getvalue(), filename="empty.zip", content_type="application/zip")
    resp = await client.post("/api/batches/upload", data=form, headers=auth)
    assert resp.status == 201, await resp.text()
    batch_id = (await resp.json())["batch_id"]
    for _ in range(600):  # a worker process starts (imports OpenCV) and reads the batch: seconds
        resp = await client.get(f"/api/batches/{batch_id}/progress", headers=auth)
        if (await resp.json())["status"] in ("completed", "failed"):
            break
        await asyncio.sleep(0.1)
    assert (await resp.json())["status"] == "completed"
