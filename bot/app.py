"""The composition root: build the aiohttp application from settings, wire every part once."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bot.services import SERVICES, Services
from bot.settings import Settings
from handlers import api, webhooks
from handlers.http import correlation_middleware, error_middleware

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


def init_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[correlation_middleware, error_middleware],
        client_max_size=MAX_BODY + 1,
    )
    app[SETTINGS] = settings
    app[SERVICES] = Services(settings=settings)
    app.cleanup_ctx.append(_http_session)
    webhooks.setup(app)
    api.setup(app)
    return app
