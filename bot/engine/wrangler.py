"""Fallback app fields from the repository's wrangler config (`wrangler.toml` / `.json` / `.jsonc`).

Only the fields Flareship's own `app` section leaves out are taken from it. Pure functions.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from bot.errors import FlareshipError

WRANGLER_FILES = ("wrangler.toml", "wrangler.jsonc", "wrangler.json")


_JSON_STRING = r'"(?:\\.|[^"\\])*"'
#: A string (kept as is) or a comment (dropped).
_COMMENTS = re.compile(_JSON_STRING + r"|//[^\n]*|/\*[\s\S]*?(?:\*/|$)")
#: A string (kept as is) or a comma that only whitespace separates from a closing bracket (dropped).
_TRAILING_COMMAS = re.compile(_JSON_STRING + r"|,(?=\s*[}\]])")


def strip_jsonc(text: str) -> str:
    """Remove // and /* */ comments and trailing commas, leaving strings untouched."""
    def keep_strings(match: re.Match[str]) -> str:
        return match.group() if match.group().startswith('"') else ""

    return _TRAILING_COMMAS.sub(keep_strings, _COMMENTS.sub(keep_strings, text))


def parse_wrangler(filename: str, content: bytes | str) -> dict[str, Any]:
    """The raw wrangler config as a dict; DEPLOY_001 naming the file when it does not parse."""
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    try:
        if filename.endswith(".toml"):
            data = tomllib.loads(text)
        elif filename.endswith(".jsonc"):
            data = json.loads(strip_jsonc(text))
        else:
            data = json.loads(strip_jsonc(text))  # wrangler accepts comments in .json too
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise FlareshipError("DEPLOY_001", f"{filename} does not parse: {exc}", details={"field": filename}) from None
    if not isinstance(data, dict):
        raise FlareshipError("DEPLOY_001", f"{filename} must hold an object", details={"field": filename})
    return data


def app_fields_from_wrangler(data: dict[str, Any]) -> dict[str, Any]:
    """Map wrangler's keys onto Flareship's `app` keys (only those present)."""
    fields: dict[str, Any] = {}
    for key in ("name", "main", "compatibility_date", "compatibility_flags", "vars"):
        if key in data and data[key] is not None:
            fields[key] = data[key]
    bindings = (data.get("durable_objects") or {}).get("bindings") if isinstance(data.get("durable_objects"), dict) else None
    if isinstance(bindings, list) and bindings:
        dos = []
        for b in bindings:
            if isinstance(b, dict) and b.get("class_name") and not b.get("script_name"):
                item = {"class_name": b["class_name"]}
                if b.get("name"):
                    item["binding"] = b["name"]
                dos.append(item)
        if dos:
            fields["durable_objects"] = dos
    containers = data.get("containers")
    if isinstance(containers, list) and containers and isinstance(containers[0], dict):
        c = containers[0]
        container: dict[str, Any] = {}
        if c.get("image"):
            container["image"] = c["image"]
        if c.get("class_name"):
            container["class_name"] = c["class_name"]
        if isinstance(c.get("instance_type"), str):
            container["instance_type"] = c["instance_type"]
        if c.get("max_instances") is not None:
            container["max_instances"] = c["max_instances"]
        if "image" in container:
            fields["container"] = container
    return fields


def find_wrangler(files: dict[str, bytes], directory: str = "") -> tuple[str, dict[str, Any]] | None:
    """The first wrangler config at the repository root (or `directory`), parsed."""
    prefix = f"{directory.rstrip('/')}/" if directory else ""
    for name in WRANGLER_FILES:
        path = prefix + name
        if path in files:
            return path, parse_wrangler(path, files[path])
    return None


def merge_app_fields(app: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """`app` wins field by field; wrangler fills the gaps (and the gaps inside `container`)."""
    merged = dict(fallback)
    for key, value in app.items():
        if value is None:
            continue
        if key == "container" and isinstance(value, dict) and isinstance(fallback.get("container"), dict):
            merged[key] = {**fallback["container"], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[key] = value
    return merged
