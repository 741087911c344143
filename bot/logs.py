"""Structured logging: a correlation id on every line, and secrets masked before anything is written.

Code never has to remember to redact: every secret the process learns (webhook secret, private
key, installation and Cloudflare tokens) is registered with `register_secret`, and the one
filter on the root handler masks it in the message, its arguments and any exception text.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

MASK = "***"
#: Token shapes masked even when they were never registered (defence in depth).
_TOKEN_PATTERNS = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,}|cfat_[A-Za-z0-9_\-]{16,}|fls_[A-Za-z0-9_\-]{16,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:bearer|token|basic)\s+[A-Za-z0-9._\-+/=]{16,}"
    r"|(?<=[?&]token=)[A-Za-z0-9._\-%]{8,})"  # signed links' tokens (access log lines of the live page)
)

#: Long-lived secrets (webhook secret, private key): few, any shape, matched as substrings.
_pinned: set[str] = set()
_pinned_pattern: re.Pattern[str] | None = None
#: Short-lived token-like secrets (installation tokens, JWTs, request-scoped Cloudflare tokens):
#: possibly many, so they are matched by set look-up of each token-shaped run of the text, not by
#: one ever-growing regex. value -> monotonic time it was last registered.
_ephemeral: dict[str, float] = {}
_lock = threading.Lock()
EPHEMERAL_TTL = 2 * 3600.0  # longer than any token GitHub or Flareship mints (1 h)
EPHEMERAL_MAX = 4096
_RUN = re.compile(r"[A-Za-z0-9_\-.~+/]{6,}")


def register_secret(value: str | None, *, pinned: bool = False) -> None:
    """Mask `value` in every later log line.

    `pinned` secrets (the webhook secret, the private key) are kept for the life of the process
    and matched anywhere, line by line for multi-line ones; others are kept for a couple of hours
    after they were last registered and matched as whole token-shaped words.
    """
    global _pinned_pattern
    if not value or len(value) < 6:
        return
    with _lock:
        if pinned or not _RUN.fullmatch(value):
            parts = {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= 12}
            if parts <= _pinned:
                return
            _pinned.update(parts)
            ordered = sorted(_pinned, key=len, reverse=True)
            _pinned_pattern = re.compile("|".join(re.escape(p) for p in ordered))
            return
        now = time.monotonic()
        _ephemeral.pop(value, None)
        _ephemeral[value] = now  # re-inserted: the dict stays ordered oldest first
        stripped = value.rstrip("=")
        if stripped != value and len(stripped) >= 6:
            _ephemeral[stripped] = now
        if len(_ephemeral) > EPHEMERAL_MAX or next(iter(_ephemeral.values())) < now - EPHEMERAL_TTL:
            _prune(now)


def ephemeral_secret_count() -> int:
    """How many short-lived secrets are remembered now (at most EPHEMERAL_MAX after a prune)."""
    return len(_ephemeral)


def _prune(now: float) -> None:
    for key in list(_ephemeral):
        if len(_ephemeral) > EPHEMERAL_MAX or _ephemeral[key] < now - EPHEMERAL_TTL:
            del _ephemeral[key]
        else:
            break


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    if run in _ephemeral:
        return MASK
    trimmed = run.strip(".-/+~")
    if trimmed in _ephemeral:
        return run.replace(trimmed, MASK)
    return run


def redact(text: str) -> str:
    """Mask every registered secret and every token-shaped string in `text`."""
    pattern = _pinned_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _ephemeral:
        text = _RUN.sub(_mask_run, text)
    return _TOKEN_PATTERNS.sub(MASK, text)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


@contextmanager
def correlated(value: str | None = None) -> Iterator[str]:
    """Run a block with a correlation id on every log line it writes."""
    cid = value or new_correlation_id()
    token = correlation_id.set(cid)
    try:
        yield cid
    finally:
        correlation_id.reset(token)


class _ContextFilter(logging.Filter):
    """Adds the correlation id and redacts the formatted message once, in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "correlation_id"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "correlation_id": getattr(record, "correlation_id", "-"),
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, bool, type(None))) else redact(str(value))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s")


def configure_logging(level: str = "INFO", fmt: str = "text", stream=None) -> logging.Handler:
    """Install one handler on the root logger; returns it so tests can capture output."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_flareship", False):
            root.removeHandler(old)
    handler._flareship = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log repeats every request; keep it at warning unless debugging.
    logging.getLogger("aiohttp.access").setLevel("DEBUG" if level.upper() == "DEBUG" else "WARNING")
    return handler
