"""Downloaded build-artifact zips kept on disk, so a deployment fetches its artifact once.

A deployment that waited for its build (bot/engine/build_gate.py) downloads the zip before it
takes the environment's lease; its steps, a resume after a restart and a retry read the same
file again instead of asking GitHub. Entries are named by a hash of where the artifact came
from and what it is (GitHub's API origin, repository, id, size, digest), written atomically,
and pruned by age and by total size, oldest first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.github.actions import Artifact

log = logging.getLogger(__name__)

#: Defaults: a zip is kept a day, and the cache holds at most 2 GiB.
MAX_AGE_SECONDS = 24 * 3600.0
MAX_TOTAL_BYTES = 2 * 1024 ** 3
SUFFIX = ".zip"


def default_root() -> Path:
    """A per-user folder under the system's temporary directory."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"flareship-artifacts-{user}"


def cache_key(origin: str, repository: str, artifact: Artifact) -> str:
    """One artifact of one GitHub: ids are only unique per GitHub host, so the origin is part of it."""
    parts = "\0".join([origin.rstrip("/"), repository, str(artifact.id), str(artifact.size_in_bytes),
                       artifact.created_at, artifact.digest or ""])
    return hashlib.sha256(parts.encode()).hexdigest()


@dataclass
class ArtifactCache:
    root: Path
    max_age_seconds: float = MAX_AGE_SECONDS
    max_total_bytes: int = MAX_TOTAL_BYTES

    def _path(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("an artifact cache key is a sha256 hex digest")
        return self.root / f"{key}{SUFFIX}"

    async def get(self, key: str) -> bytes | None:
        """The cached zip, or None; a hit counts as a use for the age and size limits."""
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
            os.utime(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("artifact cache: cannot read %s (%s)", path.name, exc)
            return None
        return data

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # a full or read-only disk costs a re-download, never the deployment
            log.warning("artifact cache: cannot write %s (%s)", path.name, exc)
            return
        self.prune(keep=key)

    def prune(self, keep: str | None = None) -> None:
        """Drop entries older than the age limit, then the least recently used over the size limit."""
        try:
            entries = [(p.stat(), p) for p in self.root.iterdir() if p.name.endswith(SUFFIX)
                       or p.name.startswith(".part-")]
        except OSError:
            return
        now = time.time()
        alive = []
        for st, path in entries:
            stale_part = path.name.startswith(".part-") and now - st.st_mtime > 3600
            if stale_part or (path.name.endswith(SUFFIX) and now - st.st_mtime > self.max_age_seconds):
                path.unlink(missing_ok=True)
            elif path.name.endswith(SUFFIX):
                alive.append((st, path))
        alive.sort(key=lambda e: e[0].st_mtime)
        total = sum(st.st_size for st, _ in alive)
        for st, path in alive:
            if total <= self.max_total_bytes:
                break
            if keep is not None and path.name == f"{keep}{SUFFIX}":
                continue
            path.unlink(missing_ok=True)
            total -= st.st_size
