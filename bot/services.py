"""The parts of a running Flareship, built once by the composition root (`bot.app`).

Front doors and background workers receive this one object instead of reaching for globals;
tests build it with simulated GitHub and Cloudflare endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from bot.settings import Settings

if TYPE_CHECKING:  # imported for type checkers only; each part is optional until wired
    import aiohttp

    from bot.details_links import DetailsLinks
    from bot.engine import Engine
    from bot.engine.preview_cleanup import PreviewCleaner
    from bot.engine.preview_sweep import PreviewSweep
    from bot.github.app import GitHubApp
    from bot.github.pr_comment import CommentWriter
    from bot.github.reporter import Reporter
    from bot.metrics import Metrics
    from bot.store.db import Database
    from bot.store.pr_state import PullRequestState


@dataclass
class Services:
    settings: Settings
    database: Database | None = None
    http: aiohttp.ClientSession | None = None
    github: GitHubApp | None = None
    engine: Engine | None = None
    reporter: Reporter | None = None  # PR workflows: check runs, GitHub deployments, the PR comment
    metrics: Metrics | None = None  # Prometheus hooks (bot.metrics): webhook_delivery, cloudflare_call, rate_limit
    details_links: DetailsLinks | None = None  # signed links to the live page (check runs' Details)
    pr_state: PullRequestState | None = None  # PR commands and the GitHub objects mirroring them
    comments: CommentWriter | None = None  # the one Flareship comment per pull request
    previews: PreviewCleaner | None = None  # removes recorded PR previews (bot/engine/preview_cleanup.py)
    preview_sweep: PreviewSweep | None = None  # reconciles them at start-up and periodically


#: How handlers reach the parts: `request.app[SERVICES]` (defined here, not in bot.app, so that
#: handlers can import it without importing the composition root).
SERVICES = web.AppKey("services", Services)
