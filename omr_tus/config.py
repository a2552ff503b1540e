"""Settings: built-in defaults from omr_tus/defaults.toml (package data), overridden by OMR_TUS_* variables."""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from importlib import resources
from pathlib import Path

DEFAULTS_FILE = resources.files("omr_tus") / "defaults.toml"
ENV_PREFIX = "OMR_TUS_"
S3_TEXT = ("s3_endpoint", "s3_bucket", "s3_prefix", "s3_region", "s3_access_key", "s3_secret_key")


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str
    port: int
    data_dir: Path
    database_url: str
    store_dir: Path
    max_upload_size: int
    upload_expiry: int
    janitor_interval: float
    lock_timeout: float
    stall_timeout: float
    idle_timeout: float
    shutdown_timeout: float
    cors_origins: tuple[str, ...]
    trust_proxy_headers: bool
    secret_key: str
    token_ttl: int
    log_level: str
    workers: int
    worker_lease: float
    store: str
    s3_endpoint: str
    s3_bucket: str
    s3_prefix: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str
    s3_part_size: int
    locks: str
    reservation_idle_timeout: float
    reservation_user_share: float
    password_hash_threads: int
    durable_before_ack: bool
    keep_files_days: float
    keep_batches_days: float

    @property
    def durable_dir(self) -> Path:
        """Where completed uploads live once they have left the RAM disk."""
        return self.data_dir / "files"

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        raw = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
        for key in raw:
            if ENV_PREFIX + key.upper() in env:
                raw[key] = env[ENV_PREFIX + key.upper()]
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls._resolve(raw, env)

    @classmethod
    def _resolve(cls, raw: dict, env: dict[str, str]) -> Settings:
        data_dir = Path(raw["data_dir"] or _xdg_data_home(env) / "omr-tus").expanduser()
        database_url = raw["database_url"] or f"sqlite+aiosqlite:///{data_dir / 'omr-tus.db'}"
        store_dir = Path(raw["store_dir"]).expanduser() if raw["store_dir"] else _default_store_dir(data_dir)
        origins = tuple(o.strip() for o in str(raw["cors_origins"]).split(",") if o.strip())
        return cls(
            host=str(raw["host"]),
            port=int(raw["port"]),
            data_dir=data_dir,
            database_url=async_url(str(database_url)),
            store_dir=store_dir,
            max_upload_size=int(raw["max_upload_size"]),
            upload_expiry=int(raw["upload_expiry"]),
            janitor_interval=float(raw["janitor_interval"]),
            lock_timeout=float(raw["lock_timeout"]),
            stall_timeout=float(raw["stall_timeout"]),
            idle_timeout=float(raw["idle_timeout"]),
            shutdown_timeout=float(raw["shutdown_timeout"]),
            cors_origins=origins,
            trust_proxy_headers=_bool(raw["trust_proxy_headers"]),
            secret_key=str(raw["secret_key"]) or _stored_secret(data_dir),
            token_ttl=int(raw["token_ttl"]),
            log_level=str(raw["log_level"]).upper(),
            workers=int(raw["workers"]) if int(raw["workers"]) >= 0 else (os.cpu_count() or 1),
            worker_lease=float(raw["worker_lease"]),
            store=_choice("store", raw["store"], ("local", "s3")),
            **{key: str(raw[key]) for key in S3_TEXT},
            s3_part_size=int(raw["s3_part_size"]),
            locks=_choice("locks", raw["locks"], ("auto", "process", "postgresql")),
            reservation_idle_timeout=float(raw["reservation_idle_timeout"]),
            reservation_user_share=float(raw["reservation_user_share"]),
            password_hash_threads=max(1, int(raw["password_hash_threads"])),
            durable_before_ack=_bool(raw["durable_before_ack"]),
            keep_files_days=_days("keep_files_days", raw["keep_files_days"]),
            keep_batches_days=_days("keep_batches_days", raw["keep_batches_days"]),
        )


def _xdg_data_home(env: dict[str, str]) -> Path:
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _default_store_dir(data_dir: Path) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm / "omr-tus"
    return data_dir / "incoming"


def async_url(url: str) -> str:
    """Accept plain postgresql:// and sqlite:// URLs and pick the async driver for them."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _choice(key: str, value, allowed: tuple[str, ...]) -> str:
    value = str(value).strip().lower()
    if value not in allowed:
        raise ValueError(f"{ENV_PREFIX}{key.upper()} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _days(key: str, value) -> float:
    days = float(value)
    if days < 0:
        raise ValueError(
            f"{ENV_PREFIX}{key.upper()} must be 0 (keep everything) or a number of days, not {value!r}"
        )
    return days


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def _stored_secret(data_dir: Path) -> str:
    """A secret generated on first start and kept (mode 0600) so tokens survive restarts."""
    path = data_dir / "secret_key"
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (or an earlier start) made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
