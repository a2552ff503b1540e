"""Remembers the upload URL of each file being uploaded, so a run that was interrupted (the
process killed, the laptop closed) continues where the server stopped instead of starting over.

One small file per upload under <config dir>/uploads/, named by a fingerprint of what makes
it the same upload: the file (absolute path, size, mtime), the server and the upload type
and task. A changed file or a different target is a new upload. Separate files let several
uploads run at once without overwriting each other's state.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import config_dir, read_json, write_private


class ResumeState:
    def __init__(self, path: Path, server: str, upload_type: str, task_id: str | None):
        path = path.resolve()
        stat = path.stat()
        key = json.dumps([str(path), stat.st_size, stat.st_mtime_ns, server, upload_type, task_id])
        self.file = config_dir() / "uploads" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
        self.source = str(path)

    def url(self) -> str | None:
        saved = read_json(self.file)
        return saved.get("url") if saved else None

    def save(self, url: str) -> None:
        write_private(self.file, {"url": url, "file": self.source})

    def forget(self) -> None:
        self.file.unlink(missing_ok=True)
