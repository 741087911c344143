"""The local page of `flareship setup`: shows what will be registered, sends the manifest to GitHub,
takes GitHub's redirect back, exchanges the code and writes `.env`.

Flow: https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
(the `state` we issue must come back unchanged; the code is single-use and lives an hour).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from aiohttp import web

from bot.setup.envfile import EnvFileExists, render_env, write_env
from bot.setup.manifest import build_manifest, registration_url

API_VERSION = "2022-11-28"
STYLE = ("body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1f2328}"
         "table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}"
         "button{font-size:1.05rem;padding:.5rem 1.2rem;background:#1f883d;color:#fff;border:0;border-radius:6px}"
         "code{background:#f6f8fa;padding:0 .25rem}.error{color:#cf222e}")


class SetupError(Exception):
    """The flow cannot finish; the message is safe to show (no code, key or secret in it)."""


@dataclass
class SetupFlow:
    """One run of the flow: what it registers, where it writes, and how it ended."""

    app_yml: dict[str, Any]
    state: str
    env_path: Path
    force: bool
    public_url: str
    github_url: str
    github_api_url: str
    defaults: tuple[str, str]
    org: str | None = None
    announce: Callable[[str], None] = print
    done: asyncio.Event = field(default_factory=asyncio.Event)
    created: dict[str, Any] | None = None
    failure: str | None = None
    #: set once a code is being exchanged, so a second redirect cannot start a second exchange
    exchanging: bool = False

    def manifest(self, callback_url: str) -> dict[str, Any]:
        return build_manifest(self.app_yml, public_url=self.public_url, redirect_url=callback_url)


FLOW = web.AppKey("setup_flow", SetupFlow)


def _page(title: str, body: str, *, form_action: str | None = None) -> web.Response:
    document = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    # The page may only send its form to GitHub (https://www.w3.org/TR/CSP3/#directive-form-action).
    target = "'none'"
    if form_action:
        parts = urlsplit(form_action)
        target = f"{parts.scheme}://{parts.netloc}"
    policy = f"default-src 'none'; style-src 'unsafe-inline'; form-action {target}"
    return web.Response(text=document, content_type="text/html",
                        headers={"content-security-policy": policy, "referrer-policy": "no-referrer",
                                 "cache-control": "no-store"})


def _summary(manifest: dict[str, Any], target: str) -> str:
    esc = html.escape
    permissions = "".join(f"<tr><td><code>{esc(name)}</code></td><td>{esc(str(level))}</td></tr>"
                          for name, level in sorted((manifest.get("default_permissions") or {}).items()))
    events = ", ".join(f"<code>{esc(e)}</code>" for e in manifest.get("default_events") or []) or "none"
    hook = (manifest.get("hook_attributes") or {}).get("url", "")
    return (f"<p>This registers a GitHub App on <b>{esc(target)}</b>:</p><table>"
            f"<tr><th>Name</th><td>{esc(str(manifest.get('name', '')))}</td></tr>"
            f"<tr><th>Homepage</th><td>{esc(str(manifest.get('url', '')))}</td></tr>"
            f"<tr><th>Webhook URL</th><td>{esc(str(hook))}</td></tr>"
            f"<tr><th>Events</th><td id=events>{events}</td></tr></table>"
            f"<h2>Permissions</h2><table id=permissions><tr><th>permission</th><th>access</th></tr>"
            f"{permissions}</table>")


async def show(request: web.Request) -> web.Response:
    """GET /: the summary and the button that POSTs the manifest to GitHub."""
    flow = request.app[FLOW]
    manifest = flow.manifest(str(request.url.with_path("/callback").with_query(None)))
    action = registration_url(flow.github_url, flow.state, flow.org)
    target = f"the organisation {flow.org}" if flow.org else "your personal account"
    body = (_summary(manifest, target)
            + f'<form method=post action="{html.escape(action)}">'
            f'<input type=hidden name=manifest value="{html.escape(json.dumps(manifest))}">'
            f"<p><button type=submit id=register>Register on {html.escape(urlsplit(flow.github_url).netloc)}"
            f"</button></p></form><p>GitHub shows the App once more before creating it, then sends you back"
            f" here, and the App's credentials go to <code>{html.escape(str(flow.env_path))}</code>.</p>")
    return _page("Register Flareship as a GitHub App", body, form_action=action)


async def callback(request: web.Request) -> web.Response:
    """GET /callback?code=...&state=...: GitHub's redirect after the App was created."""
    flow = request.app[FLOW]
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if not hmac.compare_digest(state.encode(), flow.state.encode()):
        return _error("This answer is not for this setup (its state does not match); nothing was changed.", 400)
    if not code:
        return _error("GitHub sent no code back; run `flareship setup` again.", 400)
    if flow.exchanging:
        return _error("This setup has already taken GitHub's answer.", 409)
    flow.exchanging = True
    try:
        app = await convert(flow.github_api_url, code)
        text = render_env(app, public_url=flow.public_url, github_url=flow.github_url,
                          github_api_url=flow.github_api_url, defaults=flow.defaults)
        try:
            write_env(flow.env_path, text, force=flow.force)
        except OSError as exc:
            raise SetupError(f"cannot write {flow.env_path}: {exc.strerror or exc}") from None
    except (SetupError, EnvFileExists) as exc:
        flow.failure = str(exc)
        flow.done.set()
        return _error(str(exc), 502 if isinstance(exc, SetupError) else 409)
    flow.created = app
    install = f"{app.get('html_url', '')}/installations/new"
    flow.announce(f"Registered the GitHub App {app.get('slug')} (id {app['id']}); wrote {flow.env_path} (mode 0600).")
    flow.announce(f"Install it on your repositories: {install}")
    flow.done.set()
    esc = html.escape
    return _page("Flareship is registered", (
        f"<p>The GitHub App <b>{esc(str(app.get('name') or app.get('slug')))}</b> exists; its id, private key"
        f" and secrets are in <code>{esc(str(flow.env_path))}</code> (readable by you only).</p>"
        f'<p>Next: <a id=install href="{esc(install)}">install it on your repositories</a>, then run'
        f" <code>flareship serve</code>. This page's server has stopped.</p>"))


def _error(message: str, status: int) -> web.Response:
    response = _page("Setup did not finish", f"<p class=error>{html.escape(message)}</p>")
    response.set_status(status)
    return response


async def convert(api_url: str, code: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """`POST /app-manifests/{code}/conversions`: the created App with its id, key and secrets."""
    url = f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {"accept": "application/vnd.github+json", "x-github-api-version": API_VERSION,
               "user-agent": "flareship-setup"}
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(url, headers=headers)
    except httpx.HTTPError as exc:
        raise SetupError(f"cannot reach GitHub's API at {api_url}: {type(exc).__name__}") from None
    if response.status_code == 404:
        raise SetupError("GitHub did not take the code: it is single-use and expires after an hour. "
                         "Run `flareship setup` again.")
    if response.status_code != 201:
        raise SetupError(f"GitHub answered {response.status_code} to the code exchange: {_message(response)}")
    try:
        app = response.json()
    except ValueError:
        raise SetupError("GitHub's answer to the code exchange is not JSON") from None
    if not isinstance(app, dict) or not isinstance(app.get("id"), int) or not app.get("pem"):
        raise SetupError("GitHub's answer to the code exchange has no App id or private key")
    return app


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return str(body.get("message", "")) if isinstance(body, dict) else response.reason_phrase


def make_app(flow: SetupFlow) -> web.Application:
    app = web.Application()
    app[FLOW] = flow
    app.router.add_get("/", show)
    app.router.add_get("/callback", callback)
    return app


async def run(flow: SetupFlow, host: str, port: int, *, ready: Callable[[str], None] | None = None) -> int:
    """Serve the page until the flow ends; 0 when `.env` was written."""
    runner = web.AppRunner(make_app(flow), access_log=None, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    url = f"http://{shown_host}:{bound[1]}/"
    (ready or flow.announce)(url)
    try:
        await flow.done.wait()
        await asyncio.sleep(0.2)  # let the last page reach the browser
    finally:
        await runner.cleanup()
    return 0 if flow.created is not None else 1
