"""Write the `.env` that `flareship serve` reads (bot/settings.py): mode 0600, never over a file unasked."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class EnvFileExists(Exception):
    """`.env` is there already and `--force` was not given."""


def quote_value(value: str) -> str:
    """A double-quoted dotenv value: python-dotenv (and Compose) read `\\n`, `\\"` and `\\\\` back."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{escaped}"'


def render_env(app: dict[str, Any], *, public_url: str, github_url: str, github_api_url: str,
               defaults: tuple[str, str]) -> str:
    """The `.env` text for a created App (the conversion answer `app`); secrets quoted, never logged."""
    html_url = str(app.get("html_url") or "")
    written = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"# Written by `flareship setup` at {written} for the GitHub App {app.get('slug')!s} ({html_url}).",
        f"# Install it on your repositories: {html_url}/installations/new",
        "# Keep this file secret (mode 0600): it holds the App's private key and secrets.",
        f"GITHUB_APP_ID={int(app['id'])}",
        f"GITHUB_APP_SLUG={quote_value(str(app.get('slug') or ''))}",
        f"GITHUB_APP_HTML_URL={quote_value(html_url)}",
        f"GITHUB_CLIENT_ID={quote_value(str(app.get('client_id') or ''))}",
        f"GITHUB_CLIENT_SECRET={quote_value(str(app.get('client_secret') or ''))}",
    ]
    if app.get("webhook_secret"):
        lines.append(f"GITHUB_WEBHOOK_SECRET={quote_value(str(app['webhook_secret']))}")
    else:
        lines.append("# GitHub returned no webhook secret: set one in the App's settings and here as "
                     "GITHUB_WEBHOOK_SECRET.")
    lines.append(f"GITHUB_PRIVATE_KEY={quote_value(str(app['pem']))}")
    lines.append(f"PUBLIC_URL={quote_value(public_url)}")
    default_github_url, default_api_url = defaults
    if github_url.rstrip("/") != default_github_url:
        lines.append(f"GITHUB_URL={quote_value(github_url)}")
    if github_api_url.rstrip("/") != default_api_url:
        lines.append(f"GITHUB_API_URL={quote_value(github_api_url)}")
    return "\n".join(lines) + "\n"


def check_writable(path: Path, force: bool) -> None:
    """Fail before anything is registered when the file could not be written afterwards."""
    if path.exists() and not force:
        raise EnvFileExists(f"{path} exists already; move it away or run `flareship setup --force` to replace it")
    if not path.parent.is_dir():
        raise OSError(f"{path.parent} is not a directory")


def write_env(path: Path, text: str, *, force: bool) -> None:
    """Create `path` with mode 0600 holding `text`: exclusively, or (force) replacing it atomically.

    The file is never readable by others, not even for a moment: it is created 0600 (umask can
    only remove bits), and a replacement is written beside it and renamed over the old one.
    """
    data = text.encode("utf-8")
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise EnvFileExists(f"{path} appeared while setting up; not overwritten (use --force)") from None
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return
    fd, temporary = tempfile.mkstemp(prefix=".env.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
