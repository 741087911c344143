"""HTML front door: pages people open from GitHub (the check run's Details link). Read-only."""

from __future__ import annotations

from aiohttp import web

from handlers.pages.deployment import deployment_page


def setup(app: web.Application) -> None:
    app.router.add_get("/deployments/{deploymentId}", deployment_page, name="deployment_page")
