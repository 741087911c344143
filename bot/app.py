"""The composition root: build every part of a running Flareship once, in dependency order.

`running_services(settings, router)` opens each resource in its own context (the session, the
database, the engine, the reporter, the previews sweep, the health probes, the delivery
writer), closes them in reverse, and yields one frozen `Services` plus the webhook dispatcher
built on it. `init_app` runs that as the app's cleanup context and lets each front door's
`setup()` add its routes; nothing assigns another part's attributes afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from gidgethub import routing

from bot.cloudflare import CloudflareClients
from bot.cloudflare.budget import RequestBudget, SharedRequestBudget
from bot.details_links import DetailsLinks
from bot.dispatcher import DISPATCHER, Dispatcher, start_dispatcher, stop_dispatcher
from bot.engine import Engine
from bot.engine.preview_sweep import previews_for, running_previews
from bot.github.app import GitHubApp, GitHubUnavailable, github_from_settings
from bot.github.pr_comment import CommentWriter
from bot.github.reporter import Reporter, reporter_for
from bot.health import HealthMonitor
from bot.logs import register_secret
from bot.metrics import Metrics, http_metrics_middleware
from bot.services import SERVICES, EngineParts, Services
from bot.settings import Settings
from bot.store.api_tokens import ApiTokenStore
from bot.store.cloudflare_budget import SharedWindow
from bot.store.db import Database
from bot.store.deliveries import DeliveryStore
from bot.store.deployments import DeploymentStore
from bot.store.dispatchers import DispatcherRegistry
from bot.store.installations import InstallationStore
from bot.store.pr_state import PullRequestState
from bot.store.previews import PreviewStore
from handlers import api, pages, webhooks
from handlers.api.sse import SSESettings
from handlers.api.state import API_STATE, ApiState
from handlers.http import envelope_middleware
from handlers.webhooks.intake import INTAKE_RULES, IntakeRules

log = logging.getLogger(__name__)

#: GitHub sends at most 25 MB; the webhook route enforces its own limit while streaming.
MAX_BODY = 25 * 1024 * 1024


@contextlib.asynccontextmanager
async def _migrated_database(settings: Settings) -> AsyncIterator[Database]:
    """Open the database and bring its schema up to date before anything uses it."""
    database = Database.from_settings(settings)
    try:
        await database.migrate()
        yield database
    finally:
        await database.close()


def cloudflare_clients(settings: Settings, database: Database) -> CloudflareClients:
    """Cloudflare clients with one request budget per token, sized by the settings: on PostgreSQL
    the budget is shared by every replica (bot/store/cloudflare_budget.py), on SQLite in-process."""
    limit, window = settings.cloudflare_budget_limit, settings.cloudflare_budget_window
    if database.dialect == "postgresql":
        return CloudflareClients(settings, keyed_budget_factory=lambda key: SharedRequestBudget(
            SharedWindow(database, key), limit, window))
    return CloudflareClients(settings, budget_factory=lambda: RequestBudget(limit, window))


@contextlib.asynccontextmanager
async def _running_engine(engine: Engine, cloudflare: CloudflareClients) -> AsyncIterator[Engine]:
    """The engine resumes in-flight deployments on start; its Cloudflare clients close after it."""
    try:
        await engine.start()
        yield engine
    finally:
        await engine.stop()
        await cloudflare.aclose()


@contextlib.asynccontextmanager
async def _running_reporter(reporter: Reporter, github: GitHubApp | GitHubUnavailable) -> AsyncIterator[Reporter]:
    """The PR reporter mirrors engine events on GitHub (check runs, deployments, the PR comment)
    when there is a GitHub App to write with; on exit it drains what it is still writing."""
    if not github.configured:
        log.warning("PR reporting is off: the GitHub App is not configured")
        yield reporter
        return
    reporter.start()
    try:
        yield reporter
    finally:
        await reporter.stop()


@contextlib.asynccontextmanager
async def _running_health(health: HealthMonitor) -> AsyncIterator[HealthMonitor]:
    await health.start()
    try:
        yield health
    finally:
        await health.stop()


@contextlib.asynccontextmanager
async def _running_deliveries(deliveries: DeliveryStore) -> AsyncIterator[DeliveryStore]:
    """The intake's group-commit writer; flushed on exit, before the database closes."""
    deliveries.start()
    try:
        yield deliveries
    finally:
        await deliveries.stop()


@contextlib.asynccontextmanager
async def running_services(settings: Settings, router: routing.Router) -> AsyncIterator[tuple[Services, Dispatcher]]:
    """Every part, built and started in dependency order, stopped in reverse; the dispatcher
    (which hands `Services` to the webhook handlers of `router`) is built last and started by
    the app's on_startup, once every cleanup context has run."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)))
        github = github_from_settings(http, settings)
        database = await stack.enter_async_context(_migrated_database(settings))
        cloudflare = cloudflare_clients(settings, database)
        lease = settings.deployment_lease_seconds
        engine = Engine(EngineParts(settings, DeploymentStore(database), github), cloudflare=cloudflare, lease_seconds=lease,
                        heartbeat_seconds=lease / 3, poll_seconds=settings.deployment_poll_seconds,
                        health_interval=settings.health_check_interval)
        await stack.enter_async_context(_running_engine(engine, cloudflare))
        secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else None
        details_links = DetailsLinks(secret, settings.public_url)
        pr_state = PullRequestState(database)
        comments = CommentWriter(pr_state)
        reporter = reporter_for(engine=engine, github=github.client, pr_state=pr_state, comments=comments,
                                public_url=settings.public_url, interval=settings.github_report_interval,
                                retry_delay=settings.github_report_retry_delay,
                                recovery_seconds=settings.github_report_recovery_seconds,
                                details_url=lambda deployment: details_links.url(deployment.id))
        await stack.enter_async_context(_running_reporter(reporter, github))
        previews, preview_sweep = previews_for(
            engine=engine, store=PreviewStore(database), github=github.client if github.configured else None,
            pr_state=pr_state, comments=comments, interval=settings.preview_sweep_seconds,
            retry_base=settings.preview_removal_retry_seconds)
        await stack.enter_async_context(running_previews(engine, preview_sweep))
        metrics = Metrics()
        health = HealthMonitor.from_settings(
            settings, github_jwt=github.jwt if isinstance(github, GitHubApp) else None,
            on_result=lambda name, result: metrics.dependency_status(name, result.status))
        await stack.enter_async_context(_running_health(health))
        wakeup = asyncio.Event()  # the intake rings it after each commit; the dispatcher waits on it
        deliveries = await stack.enter_async_context(
            _running_deliveries(DeliveryStore(database, on_stored=wakeup.set)))
        services = Services(
            settings=settings, http=http, database=database, github=github, metrics=metrics, health=health,
            details_links=details_links, engine=engine, pr_state=pr_state, comments=comments, reporter=reporter,
            previews=previews, preview_sweep=preview_sweep, api_tokens=ApiTokenStore(database),
            installations=InstallationStore(database), deliveries=deliveries,
            dispatchers=DispatcherRegistry(database),
        )
        metrics.attach_engine(engine)
        stack.callback(metrics.detach_engine)
        metrics.attach_services(services)
        owner_timeout = settings.dispatcher_owner_timeout
        dispatcher = Dispatcher(services, router, wakeup=wakeup, intake_busy=deliveries.busy,
                                owner_timeout=owner_timeout, heartbeat_interval=min(2.0, owner_timeout / 5))
        yield services, dispatcher


def init_app(settings: Settings) -> web.Application:
    """The aiohttp application: the middlewares, the parts (at start-up) and every front door's routes."""
    app = web.Application(
        middlewares=[http_metrics_middleware, envelope_middleware],
        client_max_size=MAX_BODY + 1,
    )
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else ""
    register_secret(secret, pinned=True)
    app[INTAKE_RULES] = IntakeRules(secret, webhooks.router)
    app[API_STATE] = ApiState(sse=SSESettings(poll_interval=settings.sse_poll_seconds,
                                              keepalive_interval=settings.sse_keepalive_seconds,
                                              write_timeout=settings.sse_write_timeout_seconds))

    async def parts(app: web.Application) -> AsyncIterator[None]:
        async with running_services(settings, webhooks.router) as (services, dispatcher):
            app[SERVICES] = services
            app[DISPATCHER] = dispatcher
            yield

    app.cleanup_ctx.append(parts)
    app.on_startup.append(start_dispatcher)
    app.on_shutdown.append(stop_dispatcher)
    webhooks.setup(app)
    api.setup(app)
    pages.setup(app)
    return app
