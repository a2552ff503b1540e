"""Where the client keeps its state: the server URL and token, and resumable upload URLs.

Everything lives under $XDG_CONFIG_HOME/omr-tus (default ~/.config/omr-tus). The token is a
credential, so the folder is 0700 and every file is created 0600 from its first byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .http import ClientError

CREDENTIALS = "credentials.json"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "omr-tus"


def private_dir(path: Path) -> Path:
    """Creates `path` (and parents) and makes it 0700, even if it already existed."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: dict) -> None:
    """Writes JSON atomically to a 0600 file: a temporary file created with that mode (so
    it is never readable by others, not even briefly) replaces `path` in one rename."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode of a file that was left over from a crash
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"the server URL must start with http:// or https://, got {url!r}")
    return url


def save_credentials(server: str, token: str) -> Path:
    path = config_dir() / CREDENTIALS
    write_private(path, {"server": server, "token": token})
    return path


def stored_server() -> str | None:
    stored = read_json(config_dir() / CREDENTIALS)
    return stored.get("server") if stored else None


def credentials(server: str | None) -> tuple[str, str]:
    """(server, token) for a command: the stored login, which must be for `server` if one is
    given, so a token is never sent to a server it was not issued by."""
    stored = read_json(config_dir() / CREDENTIALS) or {}
    server = normalize_server(server) if server else stored.get("server")
    if not server:
        raise ClientError("no server: pass --server URL or run 'omr-tus login --server URL' first")
    if stored.get("server") != server or not stored.get("token"):
        raise ClientError(f"not logged in to {server}: run 'omr-tus login --server {server}' first")
    return server, stored["token"]
