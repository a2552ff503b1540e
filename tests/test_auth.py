"""Login, bearer tokens, expiry, password change, roles."""

import time

import jwt
import pytest

from omr_tus import auth
from omr_tus.auth import hash_password, verify_password
from omr_tus.http.keys import AUTH, REPO

from .conftest import PASSWORD


@pytest.mark.parametrize(
    "form,status,detail",
    [
        ({"username": "alice", "password": PASSWORD}, 200, None),
        ({"username": "alice", "password": "wrong password"}, 401, "Incorrect username or password"),
        ({"username": "nobody", "password": PASSWORD}, 401, "Incorrect username or password"),
        ({"username": "alice"}, 400, "username and password are required"),
        ({}, 400, "username and password are required"),
    ],
)
async def test_login_table(api, form, status, detail):
    resp = await api.client.post("/api/auth/login", data=form)
    body = await resp.json()
    assert resp.status == status
    if detail:
        assert detail in body["detail"]
    else:
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == api.client.app[AUTH].ttl
        assert body["access_token"]


async def test_login_wants_a_form(api):
    resp = await api.client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 400
    assert "form fields" in (await resp.json())["detail"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer garbage", "Token abc", "Basic YWxpY2U6eA=="])
async def test_api_refuses_without_valid_token(api, header):
    headers = {"Authorization": header} if header else {}
    resp = await api.client.get("/api/batches", headers=headers)
    assert resp.status == 401
    assert (await resp.json())["detail"]


async def test_expired_token(api):
    auth = api.client.app[AUTH]
    now = int(time.time())
    token = jwt.encode(
        {"sub": "1", "ver": 0, "iat": now - 100, "exp": now - 1}, auth.secret, algorithm="HS256"
    )
    resp = await api.client.get("/api/batches", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert "expired" in (await resp.json())["detail"]


async def test_token_signed_with_another_key(api):
    token = jwt.encode({"sub": "1", "ver": 0, "exp": int(time.time()) + 60}, "other" * 10, algorithm="HS256")
    resp = await api.client.get("/api/batches", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


async def test_password_change_revokes_tokens(api):
    repo, auth = api.client.app[REPO], api.client.app[AUTH]
    user = await repo.user_by_name("alice")
    await repo.set_password(user.id, hash_password("a new password"))
    auth.forget(user.id)
    resp = await api.client.get("/api/batches", headers=api.auth("alice"))
    assert resp.status == 401
    await api.login("alice", "a new password")
    assert (await api.client.get("/api/batches", headers=api.auth("alice"))).status == 200


def test_password_hash_is_salted_scrypt():
    a, b = hash_password("secret pw"), hash_password("secret pw")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("secret pw", a) and not verify_password("other", a)
    assert not verify_password("secret pw", "garbage")


async def test_public_routes(client):
    for path in ("/healthz", "/readyz"):
        resp = await client.get(path)
        assert resp.status == 200, await resp.text()
    assert (await client.get("/readyz")).headers["Content-Type"].startswith("application/json")


async def test_unknown_api_route_is_json_404(api):
    resp = await api.client.get("/api/nothing-here", headers=api.auth())
    assert resp.status == 404
    assert "detail" in await resp.json()


async def test_repeated_failed_logins_are_throttled(api):
    """Five wrong passwords cost nothing; then each attempt waits (429 with Retry-After), twice
    as long after each failure, even with the right password; a success resets the count."""
    import datetime as dt

    from omr_tus.http.keys import AUTH

    clock = [1000.0]
    start = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)
    api.client.app[AUTH].throttle.clock = lambda: start + dt.timedelta(seconds=clock[0])

    await auth.create_user(api.client.app[REPO], "carol", PASSWORD)  # never logged in from here

    async def login(password: str):
        return await api.client.post("/api/auth/login", data={"username": "carol", "password": password})

    for _ in range(5):
        assert (await login("wrong password")).status == 401
    resp = await login("wrong password")  # now each attempt waits: 1 s after the 5th failure
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    assert "Too many failed logins" in (await resp.json())["detail"]
    clock[0] += 1.5
    assert (await login("wrong password")).status == 401  # the 6th failure doubles the wait
    resp = await login(PASSWORD)  # even the right password waits
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    clock[0] += 2.5
    assert (await login(PASSWORD)).status == 200  # the wait is over; a success resets the count
    for _ in range(5):
        assert (await login("wrong password")).status == 401


async def test_failed_logins_count_on_every_node(api, aiohttp_client, settings):
    """Another node on the same database sees the same count: spreading guesses over nodes
    gains nothing."""
    from omr_tus.app import create_app

    other_node = await aiohttp_client(create_app(settings))
    await auth.create_user(api.client.app[REPO], "carol", PASSWORD)  # never logged in from here
    for node in (api.client, other_node, api.client, other_node, api.client):
        resp = await node.post("/api/auth/login", data={"username": "Carol", "password": "wrong password"})
        assert resp.status == 401
    resp = await other_node.post("/api/auth/login", data={"username": "carol", "password": "wrong password"})
    assert resp.status == 429 and "Retry-After" in resp.headers
