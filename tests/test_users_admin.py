"""User administration over the API: list, create, disable/enable, reset password, role and
quota; a disabled user can neither log in nor use an older token; one enabled admin always
remains; GET /api/me shows the quota and the bytes stored."""

from __future__ import annotations

import asyncio

import pytest

from .helpers import Api

PASSWORD = "correct horse battery"


async def patch_user(api: Api, name: str, body: dict, status: int = 200, by: str = "root") -> dict:
    users = {u["username"]: u for u in (await api.get_json("/api/users", by))["users"]}
    resp = await api.client.patch(f"/api/users/{users[name]['id']}", json=body, headers=api.auth(by))
    assert resp.status == status, (resp.status, await resp.text())
    return await resp.json()


async def login_status(api: Api, name: str, password: str) -> tuple[int, str]:
    resp = await api.client.post("/api/auth/login", data={"username": name, "password": password})
    return resp.status, (await resp.json()).get("detail", "")


async def test_admin_lists_and_creates_users(api):
    listed = (await api.get_json("/api/users", "root"))["users"]
    assert [(u["username"], u["role"], u["disabled"], u["quota_bytes"]) for u in listed] == [
        ("alice", "user", False, None),
        ("bob", "user", False, None),
        ("root", "admin", False, None),
    ]
    resp = await api.client.post(
        "/api/users",
        json={"username": "clerk", "password": PASSWORD, "quota_bytes": 5000},
        headers=api.auth("root"),
    )
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert (created["username"], created["role"], created["quota_bytes"], created["usage_bytes"]) == (
        "clerk",
        "user",
        5000,
        0,
    )
    await api.login("clerk", PASSWORD)
    assert (await api.get_json("/api/me", "clerk"))["quota_bytes"] == 5000

    again = await api.client.post(
        "/api/users", json={"username": "clerk", "password": PASSWORD}, headers=api.auth("root")
    )
    assert again.status == 409 and "already exists" in (await again.json())["detail"]


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"username": "x", "password": "short"}, "at least 8 characters"),
        ({"username": "x", "password": PASSWORD, "role": "owner"}, "role must be one of user, admin"),
        ({"username": "x", "password": PASSWORD, "quota_bytes": -1}, "quota_bytes must be"),
        ({"username": "x", "password": PASSWORD, "quota_bytes": True}, "quota_bytes must be"),
        ({"username": "x", "password": PASSWORD, "admin": True}, "Unknown field 'admin'"),
        ({"username": "x"}, "username and password are required"),
        (["x"], "JSON object"),
    ],
)
async def test_creation_refusals_say_what_to_fix(api, body, detail):
    resp = await api.client.post("/api/users", json=body, headers=api.auth("root"))
    assert resp.status == 400 and detail in (await resp.json())["detail"]


async def test_only_admins_manage_users(api):
    assert (await api.client.get("/api/users", headers=api.auth("alice"))).status == 403
    resp = await api.client.post(
        "/api/users", json={"username": "x", "password": PASSWORD}, headers=api.auth("alice")
    )
    assert resp.status == 403
    root_id = (await api.get_json("/api/me", "root"))["id"]
    resp = await api.client.patch(f"/api/users/{root_id}", json={"disabled": True}, headers=api.auth("alice"))
    assert resp.status == 403


async def test_a_disabled_user_cannot_log_in_nor_use_an_older_token(api):
    assert (await api.client.get("/api/batches", headers=api.auth("alice"))).status == 200
    changed = await patch_user(api, "alice", {"disabled": True})
    assert changed["disabled"] and changed["disabled_at"]
    assert (await api.client.get("/api/batches", headers=api.auth("alice"))).status == 401
    status, detail = await login_status(api, "alice", PASSWORD)
    assert status == 403 and "disabled" in detail
    old = api.tokens["alice"]

    await patch_user(api, "alice", {"disabled": False})
    await api.login("alice", PASSWORD)
    assert (await api.client.get("/api/batches", headers=api.auth("alice"))).status == 200
    resp = await api.client.get("/api/batches", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401  # enabling again does not bring the older token back


async def test_a_password_reset_revokes_tokens(api):
    old = api.auth("bob")
    await patch_user(api, "bob", {"password": "a brand new secret"})
    assert (await api.client.get("/api/batches", headers=old)).status == 401
    assert (await login_status(api, "bob", PASSWORD))[0] == 401
    await api.login("bob", "a brand new secret")
    await patch_user(api, "bob", {"password": "short"}, status=400)


async def test_roles_and_the_last_enabled_admin(api):
    detail = (await patch_user(api, "root", {"role": "user"}, status=409))["detail"]
    assert "no enabled admin" in detail
    await patch_user(api, "root", {"disabled": True}, status=409)
    assert (await api.get_json("/api/users", "root"))["users"][2]["role"] == "admin"  # nothing changed

    await patch_user(api, "alice", {"role": "admin"})
    assert (await api.get_json("/api/me", "alice"))["is_admin"] is True
    await api.get_json("/api/users", "alice")  # her token now carries admin rights
    await patch_user(api, "root", {"role": "user"}, by="alice")
    assert (await api.client.get("/api/users", headers=api.auth("root"))).status == 403
    await patch_user(api, "alice", {"disabled": True}, status=409, by="alice")


async def test_concurrent_demotions_keep_one_admin(api):
    await patch_user(api, "alice", {"role": "admin"})
    ids = {u["username"]: u["id"] for u in (await api.get_json("/api/users", "root"))["users"]}

    async def demote(name: str, by: str) -> int:
        resp = await api.client.patch(f"/api/users/{ids[name]}", json={"role": "user"}, headers=api.auth(by))
        return resp.status

    statuses = await asyncio.gather(demote("alice", "root"), demote("root", "alice"), return_exceptions=True)
    users = (await api.get_json("/api/users", "root" if statuses[1] != 200 else "alice"))["users"]
    assert [u["username"] for u in users if u["role"] == "admin"] in (["alice"], ["root"])
    assert 200 in statuses


@pytest.mark.parametrize(
    "body, detail",
    [
        ({}, "Send one or more of role, disabled, quota_bytes, password"),
        ({"name": "x"}, "unknown field 'name'"),
        ({"disabled": "yes"}, "disabled must be true or false"),
        ({"quota_bytes": "1GB"}, "quota_bytes must be"),
    ],
)
async def test_change_refusals(api, body, detail):
    assert detail in (await patch_user(api, "alice", body, status=400))["detail"]


async def test_an_unknown_user_is_404(api):
    resp = await api.client.patch("/api/users/99999", json={"role": "user"}, headers=api.auth("root"))
    assert resp.status == 404


async def test_quota_and_usage_in_me(api):
    me = await api.get_json("/api/me", "bob")
    assert (me["quota_bytes"], me["usage_bytes"]) == (None, 0)
    await patch_user(api, "bob", {"quota_bytes": 10_000_000})
    path = await api.create(1000, {"filename": "a.zip", "upload_type": "zip_with_qr"}, user="bob")
    assert (await api.patch(path, 0, b"x" * 400, user="bob")).status == 204
    me = await api.get_json("/api/me", "bob")
    assert (me["quota_bytes"], me["usage_bytes"]) == (10_000_000, 400)
    listed = {u["username"]: u for u in (await api.get_json("/api/users", "root"))["users"]}
    assert listed["bob"]["usage_bytes"] == 400 and listed["alice"]["usage_bytes"] == 0
    await patch_user(api, "bob", {"quota_bytes": None})
    assert (await api.get_json("/api/me", "bob"))["quota_bytes"] is None
