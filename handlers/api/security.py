"""Bearer-token authentication and scope checks for the REST API.

Every API route is wrapped by `authenticated(...)` at registration (see routes.py), so a route
cannot forget it; handlers then call `authorize(request, action, environment)` where the
environment is only known from the body or the deployment.
"""

from __future__ import annotations

import functools
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.api_auth import allows, looks_like_token
from bot.errors import FlareshipError
from bot.services import SERVICES
from bot.store.api_tokens import ApiToken, ApiTokenStore

CALLER = "flareship.api_token"


def token_store(app: web.Application) -> ApiTokenStore:
    """The token store over the shared database."""
    return app[SERVICES].api_tokens


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(request: web.Request) -> ApiToken:
    value = bearer(request)
    if value is None:
        raise FlareshipError("AUTH_007", "Send 'Authorization: Bearer <token>'")
    if not looks_like_token(value):
        raise FlareshipError("AUTH_007", "The bearer token is not a Flareship API token")
    token = await token_store(request.app).authenticate(value)
    if token is None:
        raise FlareshipError("AUTH_007", "The API token is invalid, expired or revoked")
    request[CALLER] = token
    return token


def caller(request: web.Request) -> ApiToken:
    token: ApiToken = request[CALLER]
    return token


def authorize(request: web.Request, action: str, environment: str | None = None) -> None:
    """403 AUTH_006 unless the caller's token allows `action` (for `environment`)."""
    token = caller(request)
    if not allows(token.scopes, action, environment):
        needed = "admin" if action == "admin" else "read" if action == "read" else f"deploy:{environment}"
        raise FlareshipError(
            "AUTH_006",
            f"This token's scopes ({', '.join(token.scopes)}) do not allow {action}"
            + (f" on {environment}" if environment and action != "read" and action != "admin" else "")
            + f"; it needs {needed}",
            details={"requiredScope": needed, "scopes": list(token.scopes)},
        )


def authenticated(handler: Handler, *, action: str | None) -> Handler:
    """Require a valid token; with `action` ("read", "admin"), also that scope up front."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        await authenticate(request)
        if action is not None:
            authorize(request, action)
        return await handler(request)

    return wrapper


def metrics_guard(handler: Handler) -> Handler:
    """/metrics: open unless METRICS_TOKEN is set, then that exact bearer token."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        configured = request.app[SERVICES].settings.metrics_token
        metrics_token = configured.get_secret_value() if configured else None
        if not metrics_token:
            return await handler(request)
        value = bearer(request) or ""
        if not hmac.compare_digest(value.encode(), metrics_token.encode()):
            raise FlareshipError("AUTH_007", "/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'")
        return await handler(request)

    return wrapper
