"""The simulated GitHub's App-manifest flow: the "new GitHub App" page a manifest is POSTed to, and
`POST /app-manifests/{code}/conversions`, which turns the code into the App's credentials.

As on GitHub (https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest):
the page shows the App and a "Create GitHub App" button; creating it redirects to the manifest's
`redirect_url` with `code` and the `state` the form was posted with; a code works once, within an
hour. The created App becomes the simulator's App, so its id and key authenticate `GET /app`.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from bot.sim.github.handlers import Call, Handler, Reply, not_found
from bot.sim.github.state import (
    GitHubSim,
    generate_private_key,
    iso,
    public_key_pem,
    user_json,
)

CODE_TTL = 3600
LEVELS = ("read", "write", "admin")
SIM_KEY = web.AppKey("github_sim_manifest", GitHubSim)


@dataclass
class Pending:
    manifest: dict[str, Any]
    state: str
    owner: str


@dataclass
class ManifestState:
    """Manifests shown but not yet created, and codes not yet converted (code -> (manifest, owner, issued))."""

    pending: dict[str, Pending] = field(default_factory=dict)
    codes: dict[str, tuple[dict[str, Any], str, float]] = field(default_factory=dict)
    #: Every App created through the flow, newest last (the simulator answers as the newest).
    created: list[dict[str, Any]] = field(default_factory=list)


_STATES: weakref.WeakKeyDictionary[GitHubSim, ManifestState] = weakref.WeakKeyDictionary()


def manifest_state(sim: GitHubSim) -> ManifestState:
    """The flow's state for one simulated GitHub (kept beside it, not in it)."""
    found = _STATES.get(sim)
    if found is None:
        found = _STATES[sim] = ManifestState()
    return found


def manifest_problems(manifest: Any) -> list[str]:
    """What GitHub would refuse in a manifest (the fields its docs mark required, and their types)."""
    if not isinstance(manifest, dict):
        return ["the manifest must be a JSON object"]
    problems = []
    if not isinstance(manifest.get("url"), str) or not manifest["url"].startswith(("http://", "https://")):
        problems.append("url is required and must be an http(s) URL")
    redirect = manifest.get("redirect_url")
    if not isinstance(redirect, str) or not redirect.startswith(("http://", "https://")):
        problems.append("redirect_url must be an http(s) URL")
    hook = manifest.get("hook_attributes")
    if hook is not None and (not isinstance(hook, dict) or not str(hook.get("url", "")).startswith(("http://", "https://"))):
        problems.append("hook_attributes.url is required and must be an http(s) URL")
    permissions = manifest.get("default_permissions", {})
    if not isinstance(permissions, dict) or any(level not in LEVELS for level in permissions.values()):
        problems.append("default_permissions must map permission names to read, write or admin")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        problems.append("default_events must be a list of event names")
    return problems


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="text/html", text=(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)} · GitHub</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"))


async def new_app_page(request: web.Request) -> web.Response:
    """`POST /settings/apps/new?state=...` (or an organisation's) with the form field `manifest`."""
    sim = request.app[SIM_KEY]
    owner = request.match_info.get("org") or "octocat"
    if request.method == "GET":
        return _page("Register new GitHub App", "<p>Post a manifest to this page to register an App.</p>")
    form = await request.post()
    raw = form.get("manifest")
    manifest: Any = None
    try:
        manifest = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        pass
    problems = ["the form has no JSON `manifest` field"] if manifest is None else manifest_problems(manifest)
    if problems or not isinstance(manifest, dict):
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        return _page("Invalid GitHub App configuration", f"<ul class=errors>{items}</ul>", status=422)
    pending_id = secrets.token_urlsafe(12)
    manifest_state(sim).pending[pending_id] = Pending(manifest, request.query.get("state", ""), owner)
    esc = html.escape
    permissions = "".join(f"<li>{esc(name)}: {esc(level)}</li>"
                          for name, level in sorted(manifest.get("default_permissions", {}).items()))
    events = "".join(f"<li>{esc(e)}</li>" for e in manifest.get("default_events", []))
    action = request.path.rsplit("/new", 1)[0]
    return _page(f"Create GitHub App for {owner}", (
        f"<p>GitHub App name: <b id=app-name>{esc(str(manifest.get('name') or 'unnamed'))}</b></p>"
        f"<p>Homepage URL: {esc(manifest['url'])}</p>"
        f"<h2>Permissions</h2><ul>{permissions}</ul><h2>Subscribe to events</h2><ul>{events}</ul>"
        f'<form method=post action="{esc(action)}"><input type=hidden name=pending value="{pending_id}">'
        f"<button type=submit>Create GitHub App</button></form>"))


async def create_app(request: web.Request) -> web.Response:
    """The page's "Create GitHub App": issue a code and send the browser to `redirect_url`."""
    sim = request.app[SIM_KEY]
    state = manifest_state(sim)
    form = await request.post()
    pending = state.pending.pop(str(form.get("pending", "")), None)
    if pending is None:
        return _page("Page not found", "<p>This registration expired; start again.</p>", status=404)
    code = secrets.token_hex(10)
    state.codes[code] = (pending.manifest, pending.owner, sim.now())
    parts = urlsplit(pending.manifest["redirect_url"])
    query = "&".join(q for q in (parts.query, urlencode({"code": code, "state": pending.state})) if q)
    raise web.HTTPFound(urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"


async def convert_code(call: Call) -> Reply:
    """`POST /app-manifests/{code}/conversions`: unknown, used or expired codes are 404, as on GitHub."""
    sim = call.sim
    state = manifest_state(sim)
    found = state.codes.pop(call.params["code"], None)
    if found is None:
        return not_found()
    manifest, owner, issued = found
    if sim.now() - issued > CODE_TTL:
        return not_found()
    pem = generate_private_key()
    app_id = sim.next_id()
    slug = _slug(str(manifest.get("name") or f"app-{app_id}"))
    hook = manifest.get("hook_attributes")
    app = {
        "id": app_id, "slug": slug, "node_id": f"A_{app_id}", "client_id": "Iv1." + secrets.token_hex(8),
        "owner": user_json(owner), "name": manifest.get("name") or slug,
        "description": manifest.get("description"), "external_url": manifest["url"],
        "html_url": f"{call.server_root}/apps/{slug}", "created_at": iso(sim.now()), "updated_at": iso(sim.now()),
        "permissions": {"metadata": "read", **manifest.get("default_permissions", {})},
        "events": list(manifest.get("default_events", [])),
        "client_secret": secrets.token_hex(20),
        "webhook_secret": secrets.token_hex(20) if hook else None,
        "pem": pem,
    }
    # The simulator hosts one App: the new one, whose key now signs the JWTs it accepts.
    sim.app_id, sim.app_slug, sim.app_private_key = app_id, slug, pem
    sim.app_public_key = public_key_pem(pem)
    state.created.append(app)
    return Reply(201, app)


#: (method, template) -> (handler, auth, permissions), merged into the simulator's routing table.
API_ROUTES: dict[tuple[str, str], tuple[Handler, str, tuple[tuple[str, str], ...]]] = {
    ("POST", "/app-manifests/{code}/conversions"): (convert_code, "any", ()),
}


def add_pages(app: web.Application, sim: GitHubSim) -> None:
    """The flow's web pages (github.com, not the API): register them before the API's catch-all route."""
    app[SIM_KEY] = sim
    for base in ("/settings/apps", "/organizations/{org}/settings/apps"):
        app.router.add_route("*", base + "/new", new_app_page)
        app.router.add_post(base, create_app)
