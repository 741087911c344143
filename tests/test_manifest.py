"""app.yml asks for exactly what Flareship uses: the events its webhook router handles, and the
permissions the GitHub calls in its code need (bot/github/permissions.py). Both are derived here
from the code itself, so a new handler or call without a manifest change fails this test.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import Any

import yaml
from gidgethub import routing

from bot.github.paths import github_spec, match_path
from bot.github.permissions import (
    ALWAYS_DELIVERED,
    CALL_PERMISSIONS,
    EVENT_PERMISSIONS,
    R,
    required_permissions,
)
from bot.setup.manifest import PACKAGED_APP_YML, build_manifest, load_app_yml
from bot.sim.github.handlers import ROUTES
from bot.sim.github.state import DEFAULT_PERMISSIONS
from handlers.webhooks import router

ROOT = Path(__file__).resolve().parent.parent
#: gidgethub method -> HTTP method. Only these names are gidgethub's own; post/patch/... are
#: also httpx's and aiohttp's, so for them only literal paths ("/...") count.
GH_READS = {"getitem": "GET", "getiter": "GET", "get_bytes": "GET", "getstatus": "GET"}
GH_WRITES = {"post": "POST", "patch": "PATCH", "put": "PUT", "delete": "DELETE"}


class _EventRecorder(routing.Router):
    """A Router that keeps the event of every route handed to it: `Router(*routers)` replays each
    route of the routers it composes through `add`, so this reads the real router's routes."""

    def __init__(self, *routers: routing.Router) -> None:
        self.events: set[str] = set()
        super().__init__(*routers)

    def add(self, func: Any, event_type: str, **data_detail: Any) -> None:
        self.events.add(event_type)
        super().add(func, event_type, **data_detail)


def _app_yml() -> dict[str, Any]:
    return load_app_yml(PACKAGED_APP_YML)


Parts = list[str | None]  # literal text, None for a value only known at run time


def _parts(node: ast.expr, assigned: dict[str, ast.expr], returns: dict[str, ast.expr], depth: int = 0) -> Parts:
    """A path expression as literal pieces and holes: f-strings, `+`, local names, and calls of this
    module's functions that return a path (`_repo_path(repository) + "/actions/runs"`)."""
    if depth > 5:
        return [None]
    if isinstance(node, ast.Name) and node.id in assigned:
        return _parts(assigned[node.id], assigned, returns, depth + 1)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in returns:
        return _parts(returns[node.func.id], {}, returns, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _parts(node.left, assigned, returns, depth + 1) + _parts(node.right, assigned, returns, depth + 1)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out: Parts = []
        for value in node.values:
            out += [value.value] if isinstance(value, ast.Constant) and isinstance(value.value, str) else [None]
        return out
    return [None]


def _samples(parts: Parts) -> list[str] | None:
    """Concrete paths the parts can produce: each hole as one segment or two (`f"/repos/{repository}"`),
    URI-template variables as one; None unless it is a path (starts with literal "/")."""
    if not parts or not isinstance(parts[0], str) or not parts[0].startswith("/"):
        return None
    holes = parts.count(None)
    if holes > 6:
        return None
    out = []
    for fill in itertools.product(("x", "x/x"), repeat=holes):
        values = iter(fill)
        text = "".join(p if p is not None else next(values) for p in parts)
        text = text.split("{?", 1)[0]  # the query part of a URI template
        for name in {piece.split("}", 1)[0] for piece in text.split("{")[1:]}:
            text = text.replace("{" + name + "}", "x")
        out.append(text)
    return out


def _path_returns(tree: ast.Module) -> dict[str, ast.expr]:
    """This module's functions whose last `return` is a string expression, by name."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            values = [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            if values and isinstance(values[-1], (ast.JoinedStr, ast.Constant, ast.BinOp)):
                found[node.name] = values[-1]
    return found


def _method(call: ast.Call) -> str | None:
    """GET/POST/... for a gidgethub verb call; GET for `sansio.format_url(path, ...)`, gidgethub's URL
    building that code uses to GET a path itself (bot/github/actions.py stops at a redirect)."""
    if not isinstance(call.func, ast.Attribute):
        return None
    if call.func.attr == "format_url":
        return "GET"
    return GH_READS.get(call.func.attr) or GH_WRITES.get(call.func.attr)


def code_calls() -> tuple[set[tuple[str, str]], list[str]]:
    """Every GitHub call in bot/ (but the simulator) and handlers/: ({(method, template)}, unreadable)."""
    calls: set[tuple[str, str]] = set()
    unreadable: set[str] = set()
    files = [p for p in sorted((ROOT / "bot").rglob("*.py")) if "sim" not in p.relative_to(ROOT / "bot").parts]
    files += sorted((ROOT / "handlers").rglob("*.py"))
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        returns = _path_returns(tree)
        scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for scope in [tree, *scopes]:
            assigned = {t.id: n.value for n in ast.walk(scope) if isinstance(n, ast.Assign)
                        for t in n.targets if isinstance(t, ast.Name)}
            for node in ast.walk(scope):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                method = _method(node)
                if method is None:
                    continue
                samples = _samples(_parts(node.args[0], assigned, returns))
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if samples is None:
                    if isinstance(node.func, ast.Attribute) and node.func.attr in GH_READS:
                        unreadable.add(where)
                    continue
                # The reading with the most literal segments: "/repos/x/installation" would also
                # be GET /repos/{owner}/{repo} with repo="installation".
                matches = [m for m in map(match_path, samples) if m is not None]
                found = max(matches, key=lambda m: m[0].literal_segments, default=None)
                if found is None:
                    unreadable.add(f"{where} ({samples[0]} is no template of the GitHub spec subset)")
                    continue
                calls.add((method, found[0].template))
    # A name resolved at module level is tried again inside its function: one report per place.
    return calls, sorted(unreadable)


def test_events_are_the_ones_the_router_handles():
    handled = _EventRecorder(router).events
    assert {"check_run", "issue_comment", "pull_request"} <= handled  # the recorder reads the router
    subscribed = set(_app_yml()["default_events"])
    assert subscribed == handled - ALWAYS_DELIVERED, (
        f"app.yml subscribes to {sorted(subscribed)}, the router handles {sorted(handled - ALWAYS_DELIVERED)}")
    assert not subscribed & ALWAYS_DELIVERED


def test_every_github_call_in_the_code_has_a_permission_entry():
    calls, unreadable = code_calls()
    assert not unreadable, f"GitHub calls whose path this test cannot read (use a literal template): {unreadable}"
    assert len(calls) >= 15, calls  # the scan finds the calls (the reporter alone makes a dozen)
    assert ("POST", R + "/check-runs") in calls and ("DELETE", R + "/issues/{issue_number}/labels/{name}") in calls
    missing = sorted(calls - set(CALL_PERMISSIONS))
    assert not missing, f"add these calls to bot/github/permissions.py CALL_PERMISSIONS: {missing}"


def test_permission_table_covers_exactly_the_spec_subset():
    spec_calls = {(method.upper(), template) for template, item in github_spec()["paths"].items()
                  for method, operation in item.items() if isinstance(operation, dict)}
    assert set(CALL_PERMISSIONS) == spec_calls


def test_table_agrees_with_what_the_simulated_github_enforces():
    for call, entry in CALL_PERMISSIONS.items():
        route = ROUTES.get(call)
        if route is None or entry is None:
            continue
        _, auth, alternatives = route
        assert auth == "token" and (not alternatives or entry in alternatives), (call, entry, alternatives)


def test_permissions_are_exactly_what_the_calls_and_events_need():
    calls, _ = code_calls()
    assert ("GET", R + "/actions/artifacts/{artifact_id}/{archive_format}") in calls  # build artifacts
    events = set(_app_yml()["default_events"])
    needed = required_permissions(calls, events)
    assert dict(sorted(_app_yml()["default_permissions"].items())) == needed
    assert set(events) <= set(EVENT_PERMISSIONS)


def test_the_simulated_installation_is_granted_what_app_yml_asks():
    assert _app_yml()["default_permissions"] == DEFAULT_PERMISSIONS


def test_the_registered_manifest_fills_in_the_public_url():
    manifest = build_manifest(_app_yml(), public_url="https://ship.example.com/", redirect_url="http://127.0.0.1:9/cb")
    assert manifest["hook_attributes"]["url"] == "https://ship.example.com/webhooks/github"
    assert manifest["redirect_url"] == "http://127.0.0.1:9/cb"
    assert "${" not in yaml.safe_dump(manifest)
