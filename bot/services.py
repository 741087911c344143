"""The parts of a running Flareship, built once and in dependency order by the composition root
(`bot.app.running_services`).

Front doors and background workers receive this one frozen object instead of reaching for
globals; nothing in it is optional or filled in later. Where GitHub is not configured (an
API-only server), `github` is a `GitHubUnavailable` that answers SYS_002 on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from bot.settings import Settings

if TYPE_CHECKING:  # imported for type checkers only: the parts import this module's key
    import aiohttp

    from bot.details_links import DetailsLinks
    from bot.engine import Engine
    from bot.engine.ports import GitHubInstallations
    from bot.engine.preview_cleanup import PreviewCleaner
    from bot.engine.preview_sweep import PreviewSweep
    from bot.github.app import GitHubApp, GitHubUnavailable
    from bot.github.pr_comment import CommentWriter
    from bot.github.reporter import Reporter
    from bot.health import HealthMonitor
    from bot.metrics import Metrics
    from bot.store.api_tokens import ApiTokenStore
    from bot.store.db import Database
    from bot.store.deliveries import DeliveryStore
    from bot.store.deployments import DeploymentStore
    from bot.store.dispatchers import DispatcherRegistry
    from bot.store.installations import InstallationStore
    from bot.store.pr_state import PullRequestState


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    http: aiohttp.ClientSession  # the one outgoing session (GitHub calls go through it)
    database: Database
    github: GitHubApp | GitHubUnavailable
    metrics: Metrics  # Prometheus hooks (bot.metrics): webhook_delivery, cloudflare_call, rate_limit
    health: HealthMonitor  # background probes of Cloudflare, GitHub and the registry
    details_links: DetailsLinks  # signed links to the live page (check runs' Details)
    engine: Engine
    pr_state: PullRequestState  # PR commands and the GitHub objects mirroring them
    comments: CommentWriter  # the one Flareship comment per pull request
    reporter: Reporter  # PR workflows: check runs, GitHub deployments, the PR comment
    previews: PreviewCleaner  # removes recorded PR previews (bot/engine/preview_cleanup.py)
    preview_sweep: PreviewSweep  # reconciles them at start-up and periodically
    api_tokens: ApiTokenStore  # the REST API's bearer tokens
    installations: InstallationStore  # which accounts installed the App, and their repositories
    deliveries: DeliveryStore  # webhook deliveries: the intake's group commit, the dispatcher's claims
    dispatchers: DispatcherRegistry  # the dispatching processes and their heartbeats


@dataclass(frozen=True, slots=True)
class EngineParts:
    """What the engine is built from (bot.engine.ports.EngineServices): the parts before it."""

    settings: Settings
    deployments: DeploymentStore
    github: GitHubInstallations


#: How handlers reach the parts: `request.app[SERVICES]` (defined here, not in bot.app, so that
#: handlers can import it without importing the composition root).
SERVICES = web.AppKey("services", Services)
