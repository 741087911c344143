"""`CloudflareClients`: builds clients from the settings, one request budget per token, one httpx pool."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import httpx
from pydantic import SecretStr

from bot.cloudflare.budget import RequestBudget
from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.registry import RegistryClient
from bot.errors import FlareshipError
from bot.logs import register_secret
from bot.settings import CloudflareCredentials, Settings


class CloudflareClients:
    """Factory shared by the engine and the front doors.

    `for_environment(env)` uses the environment's configured credentials; `for_token(token)` any
    token (e.g. one given to /deploy/validate). Clients of the same token share one budget, so
    parallel deployments cannot cross Cloudflare's 1200 requests / 5 minutes together.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget_factory: Callable[[], RequestBudget] | None = None,
        keyed_budget_factory: Callable[[str], RequestBudget] | None = None,
        client_options: dict | None = None,
    ):
        self.settings = settings
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
                                              limits=httpx.Limits(max_connections=100))
        self._sleep = sleep
        self._budget_factory = budget_factory or (lambda: RequestBudget(sleep=sleep))
        #: Given the token's SHA-256 (never the token): budgets shared by replicas (bot/cloudflare/budget.py).
        self._keyed_budget_factory = keyed_budget_factory
        self._budgets: dict[str, RequestBudget] = {}
        self._client_options = client_options or {}

    def budget_for(self, token: str) -> RequestBudget:
        key = hashlib.sha256(token.encode()).hexdigest()
        if key not in self._budgets:
            self._budgets[key] = (self._keyed_budget_factory(key) if self._keyed_budget_factory is not None
                                  else self._budget_factory())
        return self._budgets[key]

    def for_token(self, token: str | SecretStr) -> CloudflareClient:
        value = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not value:
            raise FlareshipError("AUTH_003", "No Cloudflare API token given")
        register_secret(value)
        return CloudflareClient(self.http, base_url=self.settings.cloudflare_api_url, api_token=value,
                                budget=self.budget_for(value), sleep=self._sleep, **self._client_options)

    def credentials(self, environment: str) -> CloudflareCredentials:
        return self.settings.cloudflare_credentials(environment)

    async def for_environment(self, environment: str) -> CloudflareClient:
        """The client for `environment`'s token (FlareshipError AUTH_003 when none is configured)."""
        credentials = self.credentials(environment)
        if credentials.api_token is None or not credentials.api_token.get_secret_value():
            raise FlareshipError("AUTH_003", f"No Cloudflare API token configured for environment {environment!r}"
                                 f" (set CLOUDFLARE_API_TOKEN or CLOUDFLARE_API_TOKEN_{environment.upper()})")
        return self.for_token(credentials.api_token)

    def registry(self, *, username: str | None = None, password: str | None = None) -> RegistryClient:
        """An OCI registry client on the shared pool (credentials for the target registry)."""
        return RegistryClient(self.http, username=username, password=password, sleep=self._sleep)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
