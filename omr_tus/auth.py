"""Passwords (scrypt, a slow KDF from the standard library) and bearer tokens (HS256 JWTs
that carry the user's token_version, so a password change revokes older tokens)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable

import jwt

from . import errors
from .db.models import utcnow
from .db.repo import Repo
from .uploads.model import Principal

SCRYPT = dict(n=2**14, r=8, p=1, dklen=32)
USER_CACHE_SECONDS = 5.0  # how long a verified user is trusted without asking the database again
TOKEN_CACHE_SIZE = 10_000


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)
    return "scrypt$%d$%d$%d$%s$%s" % (SCRYPT["n"], SCRYPT["r"], SCRYPT["p"],
                                       base64.b64encode(salt).decode(), base64.b64encode(key).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                                dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A hash that never matches, checked for unknown users so that timing does not reveal them.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


class LoginThrottle:
    """Failed logins per username: the first FREE_FAILURES cost nothing, then each further
    attempt must wait twice as long as the last (up to MAX_DELAY s) after the latest failure.
    A correct password resets the count. Counted in the database, so every node applies the
    same count."""

    FREE_FAILURES = 5
    MAX_DELAY = 300.0
    FORGET_AFTER = dt.timedelta(hours=1)

    def __init__(self, repo: Repo, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.repo = repo
        self.clock = clock

    async def check(self, username: str) -> None:
        row = await self.repo.login_failures(username.lower())
        if row is None:
            return
        wait = self._delay(row.failures) - (self.clock() - row.last_failure).total_seconds()
        if wait > 0 and self.clock() - row.last_failure < self.FORGET_AFTER:
            raise errors.TOO_MANY_REQUESTS(
                f"Too many failed logins for {username!r}: try again in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))})

    async def failed(self, username: str) -> None:
        now = self.clock()
        await self.repo.record_login_failure(username.lower(), now, now - self.FORGET_AFTER)

    async def succeeded(self, username: str) -> None:
        await self.repo.clear_login_failures(username.lower())

    def _delay(self, failures: int) -> float:
        extra = failures - self.FREE_FAILURES
        return 0.0 if extra < 0 else min(2.0 ** extra, self.MAX_DELAY)


class Authenticator:
    def __init__(self, repo: Repo, secret: str, ttl: int):
        self.repo = repo
        self.throttle = LoginThrottle(repo)
        self.secret = secret
        self.ttl = ttl
        self._cache: dict[int, tuple[float, Principal, int]] = {}
        self._tokens: dict[str, tuple[int, int, int]] = {}  # verified token -> (exp, user id, version)

    async def login(self, username: str, password: str) -> dict:
        await self.throttle.check(username)
        user = await self.repo.user_by_name(username)
        ok = await asyncio.to_thread(verify_password, password, user.password_hash if user else _DUMMY_HASH)
        if user is None or not ok:
            await self.throttle.failed(username)
            raise errors.UNAUTHORIZED("Incorrect username or password")
        await self.throttle.succeeded(username)
        now = int(time.time())
        token = jwt.encode({"sub": str(user.id), "ver": user.token_version, "iat": now, "exp": now + self.ttl},
                           self.secret, algorithm="HS256")
        return {"access_token": token, "token_type": "bearer", "expires_in": self.ttl}

    async def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise errors.UNAUTHORIZED()
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.UNAUTHORIZED("The Authorization header must be 'Bearer <token>'")
        user_id, version = self._verify(token.strip())
        principal, current_version = await self._user(user_id)
        if principal is None or version != current_version:
            raise errors.UNAUTHORIZED("Token is no longer valid; log in again at POST /api/auth/login")
        return principal

    def _verify(self, token: str) -> tuple[int, int]:
        """(user id, token version) of a valid token. A token verified once is remembered
        until it expires, so the signature is not checked again on every request."""
        known = self._tokens.get(token)
        if known is not None and known[0] > time.time():
            return known[1], known[2]
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
            user_id, version, exp = int(claims["sub"]), int(claims.get("ver", -1)), int(claims["exp"])
        except jwt.ExpiredSignatureError:
            self._tokens.pop(token, None)
            raise errors.UNAUTHORIZED("Token has expired; log in again at POST /api/auth/login") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise errors.UNAUTHORIZED("Invalid token; log in again at POST /api/auth/login") from None
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            self._tokens.clear()
        self._tokens[token] = (exp, user_id, version)
        return user_id, version

    async def _user(self, user_id: int) -> tuple[Principal | None, int]:
        cached = self._cache.get(user_id)
        if cached and time.monotonic() - cached[0] < USER_CACHE_SECONDS:
            return cached[1], cached[2]
        row = await self.repo.user_by_id(user_id)
        if row is None:
            self._cache.pop(user_id, None)
            return None, -1
        principal = Principal(id=row.id, username=row.username, role=row.role)
        self._cache[user_id] = (time.monotonic(), principal, row.token_version)
        return principal, row.token_version

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)


async def create_user(repo: Repo, username: str, password: str, admin: bool = False) -> int:
    if not username or len(username) > 64:
        raise ValueError("username must be 1-64 characters")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    if await repo.user_by_name(username) is not None:
        raise ValueError(f"user {username!r} already exists")
    hashed = await asyncio.to_thread(hash_password, password)
    return await repo.create_user(username, hashed, "admin" if admin else "user")
