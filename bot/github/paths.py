"""Map a GitHub REST URL back to its documented path template (`/repos/{owner}/{repo}/...`).

The client counts requests per template (tests, metrics) and the simulated GitHub routes and
validates requests by template; both read the templates from the OpenAPI subset of the calls
Flareship makes, so the two sides cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

SPEC_PATH = Path(__file__).resolve().parent.parent / "sim" / "specs" / "github-openapi-subset.json"


@functools.cache
def github_spec() -> dict[str, Any]:
    """The OpenAPI subset of the GitHub REST calls Flareship makes (read once, on first use)."""
    return json.loads(SPEC_PATH.read_text())


@dataclass(frozen=True)
class PathTemplate:
    template: str
    pattern: re.Pattern[str]
    #: Path parameters that may contain `/` (`x-multi-segment` in the spec).
    multi_segment: frozenset[str]
    literal_segments: int

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def _parameter(spec: dict[str, Any], param: dict[str, Any]) -> dict[str, Any]:
    ref = param.get("$ref")
    if ref:
        return spec["components"]["parameters"][ref.rsplit("/", 1)[-1]]
    return param


def compile_templates(spec: dict[str, Any]) -> list[PathTemplate]:
    """One matcher per spec path; templates with more literal segments are tried first."""
    compiled = []
    for template, item in spec["paths"].items():
        multi = set()
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for raw in operation.get("parameters", []) + item.get("parameters", []):
                param = _parameter(spec, raw)
                if param.get("in") == "path" and param.get("x-multi-segment"):
                    multi.add(param["name"])
        regex = ""
        literals = 0
        for segment in template.strip("/").split("/"):
            name = segment[1:-1] if segment.startswith("{") and segment.endswith("}") else None
            if name is None:
                regex += "/" + re.escape(segment)
                literals += 1
            elif name in multi:
                regex += f"/(?P<{name}>.+)"
            else:
                regex += f"/(?P<{name}>[^/]+)"
        compiled.append(PathTemplate(template, re.compile(regex or "/"), frozenset(multi), literals))
    compiled.sort(key=lambda t: (-t.literal_segments, -len(t.template)))
    return compiled


@functools.cache
def github_templates() -> tuple[PathTemplate, ...]:
    return tuple(compile_templates(github_spec()))


def match_path(path: str) -> tuple[PathTemplate, dict[str, str]] | None:
    """The template a request path (without any GHES prefix) belongs to, with its parameters."""
    for template in github_templates():
        params = template.match(path)
        if params is not None:
            return template, params
    return None


def path_template(url: str, base_url: str = "") -> str:
    """`https://host/api/v3/repos/o/r/pulls/1?x=y` -> `/repos/{owner}/{repo}/pulls/{pull_number}`.

    URLs outside the API (e.g. a codeload redirect target) and unknown paths are reported by
    their first segment only, so counters never grow one key per id.
    """
    path = urlsplit(url).path
    prefix = urlsplit(base_url).path.rstrip("/") if base_url else ""
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix):]
    found = match_path(path)
    if found is not None:
        return found[0].template
    first = path.strip("/").split("/", 1)[0]
    return f"/{first}/..." if first else "/"
