"""Passwords (scrypt, a slow KDF from the standard library) and bearer tokens (HS256 JWTs
that carry the user's token_version, so a password change revokes older tokens)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jwt

from . import errors
from .db.models import utcnow
from .db.repo import Repo
from .uploads.model import Principal

# OWASP Password Storage Cheat Sheet: scrypt with N=2^17, r=8, p=1 (128 MiB and about a
# quarter of a second per hash). Hashes stored with other parameters are redone at login.
SCRYPT = dict(n=2**17, r=8, p=1, dklen=32)
USER_CACHE_SECONDS = 5.0  # how long a verified user is trusted without asking the database again
TOKEN_CACHE_SIZE = 10_000
HASH_QUEUE = 64  # logins in progress beyond this get 503: the hashing queue stays bounded
PER_ADDRESS = 4  # logins in progress from one address (group): nobody fills the queue alone


def _maxmem(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2) + 1024 * 1024


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, maxmem=_maxmem(SCRYPT["n"], SCRYPT["r"], SCRYPT["p"]), **SCRYPT
    )
    return "scrypt$%d$%d$%d$%s$%s" % (
        SCRYPT["n"],
        SCRYPT["r"],
        SCRYPT["p"],
        base64.b64encode(salt).decode(),
        base64.b64encode(key).decode(),
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_maxmem(int(n), int(r), int(p)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def outdated(stored: str) -> bool:
    """Whether a stored hash was made with other parameters than today's (then it is redone)."""
    return stored.split("$")[1:4] != [str(SCRYPT[k]) for k in ("n", "r", "p")]


@functools.cache
def _dummy_hash(n: int, r: int, p: int) -> str:
    """A hash that never matches, checked for unknown users so that timing does not reveal them."""
    return hash_password(secrets.token_urlsafe(16))


class LoginThrottle:
    """Login attempts counted per client address and per username, before the password is
    checked, in one statement each (repo.count_login_attempt), so concurrent guesses cannot
    all be checked; a success takes its attempt back. After `free` attempts in a row that
    were not successes, each further one waits twice as long as the last (up to a maximum)
    after the latest; a count is forgotten an hour after its last attempt (OWASP's exponential
    lockout).

    The address limit is strict (20 free, up to 5 minutes): one client cannot guess for long.
    The username limit is short (5 free, up to 30 s), and an address with no failures of its
    own passes it while the username has fewer than USER_HARD failures, so guessing another
    user's password can neither lock them out for long nor keep them out from where they log in.
    Behind a proxy, the address is the last one it adds to X-Forwarded-For (a client can
    forge the first). An address that has logged in as a user before is never held back by
    that user's count (login_addresses, forgotten KNOWN_FOR after its last login): guesses
    from many addresses cannot keep the user out from where they work. IPv6 addresses count
    by /64, the block one client usually holds."""

    ADDRESS = (20, 300.0)  # (free attempts, maximum wait in seconds)
    USER = (5, 30.0)
    USER_HARD = 50
    FORGET_AFTER = dt.timedelta(hours=1)
    KNOWN_FOR = dt.timedelta(days=30)

    def __init__(self, repo: Repo, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.repo = repo
        self.clock = clock

    async def enter(self, username: str, address: str) -> None:
        """Counts the attempt against the address and the username; 429 if either must wait."""
        address_key, user_key = self.keys(username, address)
        count = await self._count(address_key, self.ADDRESS)
        if count is None:
            raise await self._too_many(address_key, self.ADDRESS, "from this address")
        if await self.repo.known_login_address(user_key, address_key):
            return
        if await self._count(user_key, self.USER, free=self.USER_HARD if count == 1 else None) is None:
            await self.repo.uncount_login_attempt(address_key)  # not checked: it costs the address nothing
            raise await self._too_many(user_key, self.USER, f"for {username!r}")

    async def succeeded(self, username: str, address: str) -> None:
        address_key, user_key = self.keys(username, address)
        await self.repo.clear_login_failures(user_key)
        await self.repo.uncount_login_attempt(address_key)
        await self.repo.remember_login_address(user_key, address_key, self.clock())

    async def forget_old(self) -> None:
        await self.repo.forget_login_failures(self.clock() - self.FORGET_AFTER)
        await self.repo.forget_login_addresses(self.clock() - self.KNOWN_FOR)

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, str]:
        return f"address:{address_group(address)}"[:255], f"user:{username.lower()}"[:255]

    async def _count(self, key: str, rule: tuple[int, float], free: int | None = None) -> int | None:
        """Counts an attempt under `rule`; `free`: more attempts than the rule's pass at once."""
        start, most = rule
        free = start if free is None else free
        now = self.clock()
        waits = [
            now - dt.timedelta(seconds=self._delay(n, start, most))
            for n in range(free, max(free, start + math.ceil(math.log2(most))) + 1)
        ]
        return await self.repo.count_login_attempt(key, now, now - self.FORGET_AFTER, free, waits)

    async def _too_many(self, key: str, rule: tuple[int, float], what: str) -> errors.ServiceError:
        row = await self.repo.login_failures(key)
        wait = 1.0
        if row is not None:
            wait = self._delay(row.failures, *rule) - (self.clock() - row.last_failure).total_seconds()
        seconds = str(max(1, math.ceil(wait)))
        return errors.TOO_MANY_REQUESTS(
            f"Too many failed logins {what}: try again in {seconds} s", headers={"Retry-After": seconds}
        )

    @staticmethod
    def _delay(failures: int, free: int, most: float) -> float:
        extra = failures - free
        return 0.0 if extra < 0 else min(2.0**extra, most)


def address_group(address: str) -> str:
    """One key per client: an IPv4 address (an IPv4-mapped IPv6 one too) as itself, IPv6 by
    its /64 (a client usually holds a whole /64), anything else as given."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]").split("%")[0])
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class Authenticator:
    def __init__(self, repo: Repo, secret: str, ttl: int, hash_threads: int = 2):
        self.repo = repo
        self.throttle = LoginThrottle(repo)
        self.secret = secret
        self.ttl = ttl
        self._cache: dict[int, tuple[float, Principal, int]] = {}
        self._tokens: dict[str, tuple[int, int, int]] = {}  # verified token -> (exp, user id, version)
        # Password hashing has threads of its own: other CPU work (review images, checksums)
        # never makes a login wait, and a flood of logins never takes more than these threads.
        self._pool = ThreadPoolExecutor(max_workers=hash_threads, thread_name_prefix="password")
        self._queued = 0
        self._per_address: dict[str, int] = {}  # logins in progress per address group

    async def login(self, username: str, password: str, address: str) -> dict:
        """A token for a correct password. Refused (503) before anything is counted when
        HASH_QUEUE logins are already in progress, or PER_ADDRESS from the same address."""
        group = address_group(address)
        if self._queued >= HASH_QUEUE or self._per_address.get(group, 0) >= PER_ADDRESS:
            raise errors.UNAVAILABLE(
                "Too many logins at once; retry in a moment", headers={"Retry-After": "1"}
            )
        self._queued += 1
        self._per_address[group] = self._per_address.get(group, 0) + 1
        try:
            return await self._login(username, password, address)
        finally:
            self._queued -= 1
            if self._per_address[group] == 1:
                del self._per_address[group]
            else:
                self._per_address[group] -= 1

    async def _login(self, username: str, password: str, address: str) -> dict:
        await self.throttle.enter(username, address)
        user = await self.repo.user_by_name(username)
        stored = (
            user.password_hash
            if user
            else await self._hashing(_dummy_hash, SCRYPT["n"], SCRYPT["r"], SCRYPT["p"])
        )
        if not await self._hashing(verify_password, password, stored) or user is None:
            raise errors.UNAUTHORIZED("Incorrect username or password")
        if user.disabled_at is not None:  # only told to who knows the password
            raise errors.FORBIDDEN(f"User {username!r} is disabled; an admin can enable the account again")
        await self.throttle.succeeded(username, address)
        if outdated(user.password_hash):
            await self.repo.rehash_password(
                user.id, user.password_hash, await self._hashing(hash_password, password)
            )
        now = int(time.time())
        token = jwt.encode(
            {"sub": str(user.id), "ver": user.token_version, "iat": now, "exp": now + self.ttl},
            self.secret,
            algorithm="HS256",
        )
        return {"access_token": token, "token_type": "bearer", "expires_in": self.ttl}

    async def _hashing(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

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


def check_password(password: str) -> None:
    """The rule for a new password (raises ValueError with what to change)."""
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")


async def create_user(repo: Repo, username: str, password: str, admin: bool = False) -> int:
    if not username or len(username) > 64:
        raise ValueError("username must be 1-64 characters")
    check_password(password)
    if await repo.user_by_name(username) is not None:
        raise ValueError(f"user {username!r} already exists")
    hashed = await asyncio.to_thread(hash_password, password)
    return await repo.create_user(username, hashed, "admin" if admin else "user")
