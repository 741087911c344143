"""The GitHub App manifest `flareship setup` registers: `app.yml` with this install's URLs filled in.

GitHub's manifest fields: https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
`app.yml` holds `${PUBLIC_URL}` where the install's public address goes; `redirect_url` is always
the setup page's own callback, since that is where GitHub sends the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

#: `app.yml` next to the package (a source checkout); `./app.yml` in the working directory wins.
PACKAGED_APP_YML = Path(__file__).resolve().parent.parent.parent / "app.yml"
PUBLIC_URL_PLACEHOLDER = "${PUBLIC_URL}"
#: The manifest keys GitHub reads; anything else in app.yml is a mistake worth naming.
MANIFEST_KEYS = frozenset({"name", "url", "description", "public", "hook_attributes", "redirect_url",
                           "callback_urls", "setup_url", "setup_on_update", "request_oauth_on_install",
                           "default_events", "default_permissions"})


class ManifestError(Exception):
    """app.yml cannot be used; the message says which file and why."""


def find_app_yml(explicit: Path | None = None) -> Path:
    """The manifest file: `--manifest`, else `./app.yml`, else the one shipped with the source."""
    for candidate in ([explicit] if explicit else [Path("app.yml"), PACKAGED_APP_YML]):
        if candidate.is_file():
            return candidate
    raise ManifestError(f"no app.yml found (looked for {explicit or 'app.yml'}"
                        + ("" if explicit else f" and {PACKAGED_APP_YML}") + "); pass --manifest PATH")


def load_app_yml(path: Path) -> dict[str, Any]:
    """app.yml as a mapping, checked enough that GitHub will not reject it for its shape."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} must be a mapping of manifest fields")
    unknown = sorted(set(data) - MANIFEST_KEYS)
    if unknown:
        raise ManifestError(f"{path}: not GitHub App manifest fields: {', '.join(unknown)}")
    if not isinstance(data.get("url"), str) or not data["url"]:
        raise ManifestError(f"{path}: `url` (the App's homepage) is required")
    events = data.get("default_events") or []
    permissions = data.get("default_permissions") or {}
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ManifestError(f"{path}: `default_events` must be a list of event names")
    if not isinstance(permissions, dict) or not all(v in ("read", "write", "admin") for v in permissions.values()):
        raise ManifestError(f"{path}: `default_permissions` must map names to read, write or admin")
    return data


def _fill(value: Any, public_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(PUBLIC_URL_PLACEHOLDER, public_url)
    if isinstance(value, list):
        return [_fill(item, public_url) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, public_url) for key, item in value.items()}
    return value


def build_manifest(app_yml: dict[str, Any], *, public_url: str, redirect_url: str) -> dict[str, Any]:
    """The JSON GitHub receives: `${PUBLIC_URL}` replaced, `redirect_url` pointing back at the setup page."""
    manifest = _fill(app_yml, public_url.rstrip("/"))
    manifest["redirect_url"] = redirect_url
    return manifest


def registration_url(github_url: str, state: str, org: str | None = None) -> str:
    """Where the form POSTs the manifest: the user's or an organisation's "new GitHub App" page."""
    base = github_url.rstrip("/")
    page = f"/organizations/{quote(org, safe='')}/settings/apps/new" if org else "/settings/apps/new"
    return f"{base}{page}?state={quote(state, safe='')}"
