"""Text for GitHub: its size limits and the small formatters the check run and the PR comment share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: GitHub's limit on a check run's output fields and on a comment body.
MAX_OUTPUT_CHARS = 65535


def truncate(text: str, limit: int, *, keep: str = "end", marker: str = "\n… (truncated)") -> str:
    """Cut `text` to `limit` characters at a line boundary, saying that it was cut."""
    if len(text) <= limit:
        return text
    room = limit - len(marker)
    if keep == "end":  # keep the newest lines (logs)
        tail = text[-room:]
        cut = tail.find("\n")
        tail = tail[cut + 1:] if 0 <= cut < len(tail) - 1 else tail
        return marker.strip("\n") + "\n" + tail if len(marker.strip("\n")) + 1 + len(tail) <= limit else tail[-limit:]
    head = text[:room]
    cut = head.rfind("\n")
    head = head[:cut] if cut > 0 else head
    return head + marker


def short_sha(sha: str | None) -> str:
    return sha[:7] if sha else "unknown"


def cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_repo(repository: str) -> tuple[str, str]:
    owner, _, name = repository.partition("/")
    return owner, name
