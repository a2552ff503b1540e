"""Every route but login, health, the OpenAPI document and the web page's files needs a valid
bearer token: the router is walked, so a route added later is checked too."""

from __future__ import annotations

import re

import pytest

PUBLIC = {
    ("POST", "/api/auth/login"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/assets/{name}"),
    ("GET", "/lib/chunked-upload.js"),
    ("GET", "/lib/chunked-upload.js.map"),
}
TUS_METHODS = (
    "HEAD",
    "PATCH",
    "DELETE",
    "GET",
)  # the * route of /files/{upload_id} (OPTIONS is CORS/tus discovery)


def concrete(path: str) -> str:
    """A real URL for a route template: any value where a variable is."""
    return re.sub(r"\{[^}]+\}", "12345678", path)


def routes(app) -> list[tuple[str, str]]:
    found = []
    for route in app.router.routes():
        path = route.resource.canonical
        for method in TUS_METHODS if route.method == "*" else [route.method]:
            if method not in ("HEAD", "OPTIONS") or route.method == "*":
                found.append((method, path))
    return sorted(set(found))


async def test_the_router_has_no_unexpected_public_route(client):
    for route in client.app.router.routes():
        method = "GET" if route.method == "HEAD" else route.method  # aiohttp adds HEAD beside each GET
        key = (method, route.resource.canonical)
        assert getattr(route.handler, "public", False) == (key in PUBLIC), key


@pytest.mark.parametrize("token", [None, "Bearer not-a-token", "Basic YWxpY2U6cGFzc3dvcmQ="])
async def test_every_private_route_refuses_a_missing_or_bad_token(client, token):
    checked = 0
    for method, path in routes(client.app):
        if (method, path) in PUBLIC:
            continue
        headers = {"Tus-Resumable": "1.0.0", **({"Authorization": token} if token else {})}
        resp = await client.request(method, concrete(path), headers=headers)
        assert resp.status == 401, (method, path, resp.status)
        checked += 1
    assert checked >= 20


ADMIN_READS = (
    "/api/tasks/{task_id}",
    "/api/tasks/{task_id}/statistics",
    "/api/tasks/{task_id}/statistics.csv",
)


async def test_task_reads_are_for_admins_only(api):
    """A task holds its answer key, and its item analysis tells about it: to a user who is no
    admin, none of them exists (404), while an admin reads them."""
    from .test_omr_pipeline import TASK, register_task

    await register_task(api)
    # preview.png answers 403 to users (below); /registered is for every signed-in user
    others = {"/api/tasks/{task_id}/preview.png", "/api/tasks/{task_id}/registered"}
    task_reads = {p for m, p in routes(api.client.app) if m == "GET" and p.startswith("/api/tasks/")}
    assert task_reads - others == set(ADMIN_READS)
    for path in ADMIN_READS:
        url = path.replace("{task_id}", TASK)
        resp = await api.client.get(url, headers=api.auth("alice"))
        assert resp.status == 404, (url, resp.status)
        resp = await api.client.get(url, headers=api.auth("root"))
        assert resp.status == 200, (url, resp.status)


ADMIN_ONLY = [
    ("GET", "/api/users", None),
    ("POST", "/api/users", {"username": "x", "password": "long enough"}),
    ("PATCH", "/api/users/1", {"role": "user"}),
    ("GET", "/api/tasks", None),
    ("GET", "/api/tasks/11600111/preview.png", None),
]


@pytest.mark.parametrize("method, path, body", ADMIN_ONLY)
async def test_user_and_task_administration_is_for_admins(api, method, path, body):
    resp = await api.client.request(method, path, json=body, headers=api.auth("alice"))
    assert resp.status == 403, (method, path, resp.status, await resp.text())
    assert "admin" in (await resp.json())["detail"]
