"""The REST API (deployments, auth, monitoring; docs/rest-api.md), plus the bare liveness check."""

from __future__ import annotations

from aiohttp import web


async def healthz(request: web.Request) -> web.Response:
    """Bare liveness: the process answers HTTP. No envelope, no dependencies."""
    return web.json_response({"status": "ok"})


def setup(app: web.Application) -> None:
    from handlers.api import routes

    app.router.add_get("/healthz", healthz)
    routes.setup(app)
