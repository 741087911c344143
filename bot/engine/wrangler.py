"""The repository's wrangler config: which file, how it parses, and `env.<name>` applied.

Pure functions. wrangler's own rules are followed (https://github.com/cloudflare/workers-sdk,
packages/workers-utils/src/config/validation.ts `normalizeAndValidateEnvironment`): the file
precedence json > jsonc > toml, and for a named environment the inheritable keys fall back to the
top level while the non-inheritable ones (vars and every binding) do not. What each key means for
the upload is decided in `bot.engine.wrangler_keys`; mapping onto an `AppSpec` in `bot.engine.appspec`.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from bot.errors import FlareshipError

#: wrangler's precedence (workers-utils config `findWranglerConfig`: json, then jsonc, then toml).
WRANGLER_FILES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")

#: Keys a named environment inherits from the top level when it does not set them.
INHERITABLE_KEYS = frozenset({
    "account_id", "compatibility_date", "compatibility_flags", "jsx_factory", "jsx_fragment", "tsconfig",
    "name", "main", "find_additional_modules", "preserve_file_names", "base_dir", "rules", "route", "routes",
    "triggers", "build", "workers_dev", "preview_urls", "migrations", "exports", "logfwdr", "no_bundle",
    "minify", "keep_names", "first_party_worker", "logpush", "upload_source_maps", "observability", "access",
    "cache", "compliance_region", "python_modules", "previews", "assets", "limits", "placement", "usage_model",
})
#: Keys a named environment must repeat: the top level's value is not used for it.
NON_INHERITABLE_KEYS = frozenset({
    "vars", "secrets", "define", "durable_objects", "workflows", "kv_namespaces", "cloudchamber", "containers",
    "send_email", "queues", "connect", "r2_buckets", "d1_databases", "vectorize", "ai_search_namespaces",
    "ai_search", "websearch", "agent_memory", "hyperdrive", "services", "analytics_engine_datasets",
    "dispatch_namespaces", "mtls_certificates", "tail_consumers", "streaming_tail_consumers", "unsafe", "browser",
    "ai", "images", "stream", "media", "pipelines", "secrets_store_secrets", "artifacts", "unsafe_hello_world",
    "flagship", "worker_loaders", "ratelimits", "vpc_services", "vpc_networks", "version_metadata",
})
#: Keys that exist only at the top level (workers-utils config/config.ts `ConfigFields`).
TOP_LEVEL_ONLY_KEYS = frozenset({
    "$schema", "env", "legacy_env", "send_metrics", "dependencies_instrumentation", "dev", "site", "legacy_assets",
    "wasm_modules", "text_blobs", "data_blobs", "alias", "keep_vars", "pages_build_output_dir", "node_compat",
})


class WranglerConfig(dict[str, Any]):
    """The parsed file (a plain dict) that remembers which file it came from."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.path = path


_JSON_STRING = r'"(?:\\.|[^"\\\n])*"'
#: A string (kept as is), or a comment (blanked).
_COMMENTS = re.compile(_JSON_STRING + r"|//[^\n]*|/\*[\s\S]*?(?:\*/|$)")
#: A string (kept as is), or a comma that only whitespace separates from a closing bracket (blanked).
_TRAILING_COMMAS = re.compile(_JSON_STRING + r"|,(?=\s*[}\]])")


def _blank(match: re.Match[str]) -> str:
    """Strings stay; anything else becomes spaces, keeping its newlines so lines still count."""
    text = match.group()
    return text if text.startswith('"') else re.sub(r"[^\n]", " ", text)


def strip_jsonc(text: str) -> str:
    """Blank // and /* */ comments and trailing commas, leaving strings and line numbers intact."""
    return _TRAILING_COMMAS.sub(_blank, _COMMENTS.sub(_blank, text))


def parse_wrangler(filename: str, content: bytes | str) -> WranglerConfig:
    """The raw wrangler config; DEPLOY_001 naming the file and line when it does not parse."""
    if isinstance(content, bytes):
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise FlareshipError("DEPLOY_001", f"{filename} is not UTF-8 text", details={"field": filename}) from None
    else:
        text = content
    try:
        if filename.endswith(".toml"):
            data = tomllib.loads(text)
        else:
            data = json.loads(strip_jsonc(text))  # wrangler reads .json with the JSONC parser too
    except tomllib.TOMLDecodeError as exc:
        raise FlareshipError("DEPLOY_001", f"{filename} does not parse: {exc}",
                             details={"field": filename}) from None
    except json.JSONDecodeError as exc:
        raise FlareshipError("DEPLOY_001", f"{filename} does not parse at line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg}", details={"field": filename, "line": exc.lineno}) from None
    if not isinstance(data, dict):
        raise FlareshipError("DEPLOY_001", f"{filename} must hold an object", details={"field": filename})
    return WranglerConfig(filename, data)


def find_wrangler(files: dict[str, bytes], directory: str = "") -> tuple[str, WranglerConfig] | None:
    """The wrangler config at the repository root (or `directory`) that wrangler would read, parsed."""
    prefix = f"{directory.rstrip('/')}/" if directory else ""
    for name in WRANGLER_FILES:
        path = prefix + name
        if path in files:
            return path, parse_wrangler(path, files[path])
    return None


def config_path(data: dict[str, Any]) -> str:
    """The file a parsed config came from (for messages)."""
    return getattr(data, "path", "wrangler config")


def environment_config(data: dict[str, Any], environment: str) -> dict[str, Any]:
    """The config wrangler uses for `--env environment` (top level when there is no such section).

    The named section's own keys, plus the inheritable top-level keys it does not set. Its `name`
    is kept only when the section sets it (`named_environment_name`); wrangler's own fallback
    (`<name>-<env>`) is replaced by Flareship's script-name rule.
    """
    envs = data.get("env")
    section = envs.get(environment) if isinstance(envs, dict) else None
    if not isinstance(section, dict):
        return {k: v for k, v in data.items() if k != "env"}
    merged = {k: v for k, v in data.items() if k in INHERITABLE_KEYS and k not in section}
    if "route" in section or "routes" in section:  # routes are one setting: `route` or `routes`
        merged.pop("route", None)
        merged.pop("routes", None)
    merged.update(section)
    return merged


def named_environment_name(data: dict[str, Any], environment: str) -> str | None:
    """`env.<environment>.name` when the section sets it (it then names the script)."""
    envs = data.get("env")
    section = envs.get(environment) if isinstance(envs, dict) else None
    name = section.get("name") if isinstance(section, dict) else None
    return name if isinstance(name, str) and name else None


def top_level_only(data: dict[str, Any]) -> dict[str, Any]:
    """The top-level-only keys, which apply whatever environment is deployed."""
    return {k: v for k, v in data.items() if k in TOP_LEVEL_ONLY_KEYS and k != "env"}
