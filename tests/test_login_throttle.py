"""Login throttling that no one can use against another user (issue 15): attempts counted
before the password is checked, per client address and per username; scrypt at OWASP's
parameters in threads of its own."""

import asyncio
import itertools
import os
import threading
import time

import pytest

from omr_tus import auth
from omr_tus.http.keys import AUTH, REPO

from .conftest import PASSWORD, make_settings

_FRESH = itertools.count(1)


@pytest.fixture
def settings(tmp_path, database_url):
    """Behind a proxy: the tests name the client's address in X-Forwarded-For."""
    return make_settings(tmp_path, database_url, trust_proxy_headers=True)


async def login(api, username: str, password: str, address: str = "10.0.0.1"):
    return await api.client.post(
        "/api/auth/login",
        data={"username": username, "password": password},
        headers={"X-Forwarded-For": f"203.0.113.9, {address}"},
    )


async def test_concurrent_wrong_passwords_are_counted_before_any_is_checked(api, monkeypatch):
    """The report: 60 concurrent wrong passwords for one username were all checked (401)
    before the throttle answered; then the user was locked out for 300 s."""
    monkeypatch.setattr(auth, "PER_ADDRESS", 100)  # all from one address, all in the queue at once
    answers = await asyncio.gather(*(login(api, "root", "wrong password") for _ in range(60)))
    statuses = [r.status for r in answers]
    assert statuses.count(401) <= auth.LoginThrottle.USER[0] + 1 and statuses.count(429) >= 54, statuses
    started = time.monotonic()
    assert (await api.client.get("/healthz")).status == 200
    resp = await login(api, "root", PASSWORD, address="10.0.0.2")  # the admin, from where they work
    assert resp.status == 200, await resp.text()
    assert time.monotonic() - started < 0.5  # the API stays responsive


async def test_a_guesser_cannot_keep_another_user_out(api):
    for _ in range(30):
        await login(api, "alice", "wrong password")
    resp = await login(api, "alice", "wrong password")
    assert resp.status == 429
    resp = await login(api, "alice", PASSWORD, address="10.0.0.2")  # an address without failures: in at once
    assert resp.status == 200, await resp.text()
    await login(api, "alice", "a typo", address="10.0.0.3")
    resp = await login(api, "alice", PASSWORD, address="10.0.0.3")
    assert resp.status in (200, 429)
    if resp.status == 429:  # after her own typo she waits, but only briefly
        assert int(resp.headers["Retry-After"]) <= auth.LoginThrottle.USER[1]


async def test_one_address_cannot_guess_for_long_across_usernames(api):
    free = auth.LoginThrottle.ADDRESS[0]
    statuses = [(await login(api, f"user{i}", "wrong password")).status for i in range(free + 5)]
    assert statuses[:free] == [401] * free and set(statuses[free:]) == {429}, statuses
    resp = await login(api, "user999", "wrong password")
    assert "from this address" in (await resp.json())["detail"]
    assert (await login(api, "bob", PASSWORD, address="10.0.0.7")).status == 200  # others are not affected


async def test_an_older_hash_is_redone_at_login_and_tokens_stay_valid(api, monkeypatch):
    repo = api.client.app[REPO]
    before = (await repo.user_by_name("alice")).password_hash
    monkeypatch.setattr(auth, "SCRYPT", dict(auth.SCRYPT, n=auth.SCRYPT["n"] * 2))
    assert (await login(api, "alice", PASSWORD)).status == 200
    after = (await repo.user_by_name("alice")).password_hash
    assert after.split("$")[1] == str(auth.SCRYPT["n"]) and before.split("$")[1] != after.split("$")[1]
    assert auth.verify_password(PASSWORD, after)
    assert (await api.client.get("/api/me", headers=api.auth("alice"))).status == 200
    assert (await login(api, "alice", PASSWORD)).status == 200
    assert (await repo.user_by_name("alice")).password_hash == after  # done once


def test_scrypt_runs_at_owasp_parameters(monkeypatch):
    monkeypatch.undo()  # the suite's cheap parameters off
    assert auth.SCRYPT["n"] >= 2**17 and auth.SCRYPT["r"] >= 8 and auth.SCRYPT["p"] >= 1


async def test_logins_do_not_wait_behind_other_thread_work(api):
    """Other CPU work (review images, hashing of files) fills the default executor: logins
    have threads of their own."""
    loop = asyncio.get_running_loop()
    threads = min(32, (os.cpu_count() or 1) + 4)  # the default executor's size
    busy = [loop.run_in_executor(None, time.sleep, 1.5) for _ in range(2 * threads)]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    assert (await login(api, "alice", PASSWORD)).status == 200
    assert time.monotonic() - started < 1.0
    await asyncio.gather(*busy)


async def test_logins_beyond_the_hashing_queue_get_503(api, monkeypatch):
    """Hashing threads are few and each hash holds 128 MiB: a flood waits in a bounded queue."""
    monkeypatch.setattr(auth, "HASH_QUEUE", 0)
    resp = await login(api, "alice", PASSWORD)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert (
        await api.client.app[REPO].login_failures("address:10.0.0.1") is None
    )  # the refusal counted nothing
    monkeypatch.setattr(auth, "HASH_QUEUE", 64)
    assert (await login(api, "alice", PASSWORD)).status == 200


async def test_counts_an_hour_old_are_forgotten(api):
    """The janitor removes counts an hour after their last attempt: the table does not grow
    with every address that ever tried."""
    import datetime as dt

    throttle, repo = api.client.app[AUTH].throttle, api.client.app[REPO]
    now = dt.datetime.now(dt.UTC)
    throttle.clock = lambda: now - dt.timedelta(minutes=61)
    assert (await login(api, "alice", "wrong password", address="10.9.9.9")).status == 401
    throttle.clock = lambda: now - dt.timedelta(minutes=30)
    assert (await login(api, "bob", "wrong password", address="10.9.9.8")).status == 401
    throttle.clock = lambda: now
    await throttle.forget_old()
    assert (
        await repo.login_failures("address:10.9.9.9") is None
        and await repo.login_failures("user:alice") is None
    )
    assert (await repo.login_failures("address:10.9.9.8")).failures == 1


async def test_a_client_without_a_proxy_cannot_pick_its_address(api_with):
    """trust_proxy_headers is false by default: X-Forwarded-For from a client that is not
    behind a proxy names no address, so rotating it does not escape the address rule."""
    api = await api_with()
    free = auth.LoginThrottle.ADDRESS[0]
    statuses = [
        (await login(api, f"user{i}", "wrong password", address=f"198.51.100.{i}")).status
        for i in range(free + 3)
    ]
    assert statuses[free:] == [429] * 3, statuses


async def test_ipv6_addresses_count_by_64(api):
    free = auth.LoginThrottle.ADDRESS[0]
    statuses = [
        (await login(api, f"user{i}", "wrong password", address=f"2001:db8:0:7::{i + 1:x}")).status
        for i in range(free + 3)
    ]
    assert statuses[free:] == [429] * 3, statuses
    assert (await login(api, "bob", PASSWORD, address="2001:db8:0:8::1")).status == 200  # another /64
    assert auth.address_group("::ffff:192.0.2.1") == "192.0.2.1"


async def test_guesses_from_many_addresses_never_keep_a_user_out_where_they_logged_in(api):
    """Rotating addresses pass the username rule up to USER_HARD, then everyone waits; an
    address the user has logged in from before is never held back by those guesses."""
    assert (await login(api, "root", PASSWORD, address="10.9.9.9")).status == 200
    for i in range(auth.LoginThrottle.USER_HARD + 5):
        await login(api, "root", "guess", address=f"198.51.100.{i % 250}")
    assert (await login(api, "root", "guess", address="10.9.9.10")).status == 429  # a new address waits
    resp = await login(api, "root", PASSWORD, address="10.9.9.9")
    assert resp.status == 200, (resp.status, await resp.text())


async def test_one_address_cannot_fill_the_hashing_queue(api, monkeypatch):
    """Logins in progress are capped per address: a flood from one leaves room for others."""
    monkeypatch.setattr(auth, "HASH_QUEUE", 8)
    gate, entered = threading.Event(), threading.Semaphore(0)
    real = auth.verify_password

    def held(password, stored):
        entered.release()
        gate.wait(5)
        return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", held)
    flood = [asyncio.ensure_future(login(api, "alice", PASSWORD, address="10.0.0.66")) for _ in range(10)]
    await asyncio.to_thread(entered.acquire, True, 5)
    other = asyncio.ensure_future(login(api, "bob", PASSWORD, address="10.0.0.77"))
    await asyncio.sleep(0.3)
    gate.set()
    statuses = [r.status for r in await asyncio.gather(*flood)]
    assert (await other).status == 200
    assert statuses.count(503) == 10 - auth.PER_ADDRESS, statuses


async def test_a_rehash_never_undoes_a_password_change(api, monkeypatch):
    """The login verifies the old password, then rehashes it (slow): a password changed
    meanwhile (e.g. by an admin) stays changed."""
    repo = api.client.app[REPO]
    monkeypatch.setattr(auth, "SCRYPT", dict(auth.SCRYPT, n=auth.SCRYPT["n"] * 2))  # alice's hash is outdated
    started, changed = threading.Event(), threading.Event()
    real = auth.hash_password

    def slow_hash(password):
        started.set()
        changed.wait(5)
        return real(password)

    monkeypatch.setattr(auth, "hash_password", slow_hash)
    pending = asyncio.ensure_future(login(api, "alice", PASSWORD, address="10.0.0.5"))
    await asyncio.to_thread(started.wait, 5)
    await repo.set_password((await repo.user_by_name("alice")).id, real("new password 123"))
    changed.set()
    assert (await pending).status == 200
    monkeypatch.setattr(auth, "hash_password", real)
    assert (await login(api, "alice", "new password 123", address="10.0.0.6")).status == 200


async def test_the_unknown_user_hash_is_made_off_the_event_loop(api, monkeypatch):
    """The never-matching hash checked for unknown usernames is made once, in a hashing thread."""
    fresh = dict(auth.SCRYPT, p=auth.SCRYPT["p"] + next(_FRESH))  # parameters no earlier test made it with
    monkeypatch.setattr(auth, "SCRYPT", fresh)
    threads = []
    real = auth.hash_password

    def recorded(password):
        threads.append(threading.current_thread().name)
        return real(password)

    monkeypatch.setattr(auth, "hash_password", recorded)
    assert (await login(api, "nobody", "wrong password")).status == 401
    assert threads and threads[0].startswith("password"), threads
