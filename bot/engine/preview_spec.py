"""What a pull request's preview is: its names, and the `from` environment's app turned into it.

README.md "Previews": the preview of PR 17 is `pr-17`. Its deployments run in the engine under
the environment `preview/pr-17` (one lease per PR, so two PRs never wait for each other) with the
`from` environment's Cloudflare token and account. In `previews` mode it is a Worker Preview of
`from`'s script; in `script` mode a Worker `{script}-pr-17` with its own Durable Object namespaces
and container application, on workers.dev only (no routes, crons or queue consumers: those
belong to the real environment). Pure.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.engine.config import PREVIEW_ENVIRONMENT

PREVIEW_PREFIX = f"{PREVIEW_ENVIRONMENT}/"
_ENV = re.compile(rf"^{PREVIEW_ENVIRONMENT}/pr-(\d+)$")
#: Cloudflare's limit on a Worker script name.
MAX_SCRIPT_NAME = 63


class PreviewSpec(BaseModel):
    """The preview part of an `AppSpec` (stored with the deployment's config snapshot)."""

    model_config = ConfigDict(extra="forbid")

    number: int
    name: str
    mode: Literal["previews", "script"]
    #: The environment whose token, account and parent Worker it uses.
    from_environment: str
    #: The `from` environment's script: the parent Worker (previews mode) or the base of the name (script mode).
    parent_script: str
    #: Where the bindings came from (wrangler's previews block, or the `from` environment).
    bindings_source: str = ""
    #: The parent's secrets: none (False), all (True), or the names listed.
    inherit_secrets: bool | list[str] = False
    #: observability, logpush, tail_consumers, ... of wrangler's previews block (sent on create).
    settings: dict[str, Any] = {}


def preview_name(number: int) -> str:
    return f"pr-{number}"


def preview_environment(number: int) -> str:
    """The engine environment of PR `number`'s preview deployments (also the GitHub deployment's)."""
    return f"{PREVIEW_PREFIX}{preview_name(number)}"


def is_preview_environment(environment: str | None) -> bool:
    return bool(environment) and bool(_ENV.match(environment or ""))


def preview_number(environment: str | None) -> int | None:
    m = _ENV.match(environment or "")
    return int(m.group(1)) if m else None


def display_environment(environment: str) -> str:
    """`preview/pr-17` -> `preview`: the check run is `Deploy to preview`, the command `/deploy preview`."""
    return PREVIEW_ENVIRONMENT if is_preview_environment(environment) else environment


def script_mode_name(parent_script: str, number: int) -> str:
    """`{script}-pr-{number}`; DEPLOY_001 when Cloudflare would refuse the name's length."""
    from bot.errors import FlareshipError

    name = f"{parent_script}-{preview_name(number)}"
    if len(name) > MAX_SCRIPT_NAME:
        raise FlareshipError("DEPLOY_001", f"the preview Worker name {name!r} is longer than {MAX_SCRIPT_NAME} "
                             "characters; shorten app.name or use previews.mode: previews",
                             details={"field": "previews.mode"})
    return name


def credentials_environment(environment: str, config: dict[str, Any] | None) -> str:
    """The environment whose Cloudflare token and account a deployment uses (a preview: its `from`)."""
    preview = (config or {}).get("preview") if is_preview_environment(environment) else None
    if isinstance(preview, dict) and isinstance(preview.get("from_environment"), str):
        return str(preview["from_environment"])
    return environment
