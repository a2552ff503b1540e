"""CORS for a browser page on another origin: preflight, exposed headers, errors included."""

import pytest

from omr_tus.app import create_app

from .conftest import make_settings

ORIGIN = "https://exams.example.org"


@pytest.mark.parametrize(
    "path,method",
    [
        ("/files/", "POST"),
        ("/files/" + "a" * 32, "PATCH"),
        ("/api/batches", "GET"),
        ("/api/auth/login", "POST"),
    ],
)
async def test_preflight(client, path, method):
    resp = await client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset,content-type",
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert method in resp.headers["Access-Control-Allow-Methods"]
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    for header in (
        "authorization",
        "tus-resumable",
        "upload-offset",
        "upload-length",
        "upload-metadata",
        "upload-checksum",
        "x-http-method-override",
        "content-type",
    ):
        assert header in allowed


async def test_exposed_headers_on_success_and_error(api):
    resp = await api.client.post("/files/", headers=api.tus(**{"Upload-Length": "3", "Origin": ORIGIN}))
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = resp.headers["Access-Control-Expose-Headers"]
    for header in ("Location", "Upload-Offset", "Upload-Length", "Batch-Id", "Tus-Resumable"):
        assert header in exposed
    error = await api.client.patch("/files/" + "a" * 32, headers=api.tus(Origin=ORIGIN))
    assert error.status >= 400
    assert error.headers["Access-Control-Allow-Origin"] == ORIGIN
    unauth = await api.client.get("/api/batches", headers={"Origin": ORIGIN})
    assert unauth.status == 401
    assert unauth.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_origin_allow_list(aiohttp_client, tmp_path, database_url):
    client = await aiohttp_client(create_app(make_settings(tmp_path, database_url, cors_origins=ORIGIN)))
    ok = await client.options("/files/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert ok.status == 200
    bad = await client.options(
        "/files/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert bad.status == 403
    assert "Access-Control-Allow-Origin" not in bad.headers
    assert "OMR_TUS_CORS_ORIGINS" in (await bad.json())["detail"]
