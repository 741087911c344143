"""The composition root: build the aiohttp application from settings, wire every part once."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bot.details_links import DetailsLinks
from bot.dispatcher import DISPATCHER, Dispatcher, start_dispatcher, stop_dispatcher
from bot.github.app import GitHubApp
from bot.metrics import http_metrics_middleware
from bot.services import SERVICES, Services
from bot.settings import Settings
from bot.store.db import Database
from handlers import api, pages, webhooks
from handlers.http import envelope_middleware

SETTINGS = web.AppKey("settings", Settings)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)

#: GitHub sends at most 25 MB; the webhook route enforces its own limit while streaming.
MAX_BODY = 25 * 1024 * 1024


async def _http_session(app: web.Application):
    """One shared outgoing HTTP session (GitHub calls go through it)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        app[HTTP_SESSION] = session
        app[SERVICES].http = session
        yield


async def _github(app: web.Application):
    """The GitHub App (JWT, installation tokens, clients) on the shared session, when configured."""
    settings = app[SETTINGS]
    if settings.github_app_id and (settings.github_private_key or settings.github_private_key_path):
        app[SERVICES].github = GitHubApp.from_settings(app[HTTP_SESSION], settings)
    yield


async def _store(app: web.Application):
    """Open the database and bring its schema up to date before anything uses it."""
    database = Database.from_settings(app[SETTINGS])
    try:
        await database.migrate()
        app[SERVICES].database = database
        yield
    finally:
        await database.close()


async def _engine(app: web.Application):
    """The deploy engine (Cloudflare clients + runner); resumes in-flight deployments on start."""
    from bot.engine import Engine

    settings = app[SETTINGS]
    cloudflare = _cloudflare_clients(settings, app[SERVICES].database)
    lease = settings.deployment_lease_seconds
    engine = Engine(app[SERVICES], cloudflare=cloudflare, lease_seconds=lease, heartbeat_seconds=lease / 3)
    app[SERVICES].engine = engine
    await engine.start()
    try:
        yield
    finally:
        await engine.stop()
        await cloudflare.aclose()


def _cloudflare_clients(settings: Settings, database: Database | None):
    """Cloudflare clients with one request budget per token, sized by the settings: on PostgreSQL
    the budget is shared by every replica (bot/store/cloudflare_budget.py), on SQLite in-process."""
    from bot.cloudflare import CloudflareClients
    from bot.cloudflare.budget import RequestBudget, SharedRequestBudget
    from bot.store.cloudflare_budget import SharedWindow

    limit, window = settings.cloudflare_budget_limit, settings.cloudflare_budget_window
    if database is not None and database.dialect == "postgresql":
        return CloudflareClients(settings, keyed_budget_factory=lambda key: SharedRequestBudget(
            SharedWindow(database, key), limit, window))
    return CloudflareClients(settings, budget_factory=lambda: RequestBudget(limit, window))


async def _pr_workflows(app: web.Application):
    """The PR reporter: mirrors engine events on GitHub (check runs, GitHub deployments, the PR comment)."""
    from bot.github.reporter import running_reporter

    async with running_reporter(app[SERVICES]):
        yield


async def _previews(app: web.Application):
    """PR previews: the cleaner and the sweep (once at start-up, then every PREVIEW_SWEEP_SECONDS)."""
    from bot.engine.preview_sweep import running_previews

    async with running_previews(app[SERVICES]):
        yield


def init_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[http_metrics_middleware, envelope_middleware],
        client_max_size=MAX_BODY + 1,
    )
    app[SETTINGS] = settings
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else None
    app[SERVICES] = Services(settings=settings, details_links=DetailsLinks(secret, settings.public_url))
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_github)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_engine)
    app.cleanup_ctx.append(_pr_workflows)
    app.cleanup_ctx.append(_previews)
    owner_timeout = settings.dispatcher_owner_timeout
    app[DISPATCHER] = Dispatcher(app[SERVICES], webhooks.router, owner_timeout=owner_timeout,
                                 heartbeat_interval=min(2.0, owner_timeout / 5))
    app.on_startup.append(start_dispatcher)
    app.on_shutdown.append(stop_dispatcher)
    webhooks.setup(app)
    api.setup(app)
    pages.setup(app)
    return app
