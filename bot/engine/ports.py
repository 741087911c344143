"""What the engine needs from the outside, as Protocols: GitHub, Cloudflare, settings and the clock.

The real adapters are `bot.github.app` (installation clients), `bot.cloudflare.CloudflareClients`
and `bot.settings.Settings`; the tests and the demo pass the same classes pointed at the
simulators (`bot/sim/`). The store is the concrete `bot.store.deployments.DeploymentStore`,
whose database is SQLite or PostgreSQL behind one class.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.registry import RegistryClient
from bot.store.deployments import DeploymentStore

#: The engine's clock: timezone-aware UTC now (tests pass a controllable one).
Clock = Callable[[], datetime]


class GitHubInstallations(Protocol):
    """Installation-authenticated GitHub clients (a gidgethub `GitHubAPI`; its calls are untyped JSON).

    `configured` is False where no GitHub App is set up (bot.github.app.GitHubUnavailable, whose
    `client` answers SYS_002)."""

    @property
    def configured(self) -> bool: ...

    async def client(self, installation_id: int, /) -> Any: ...


class CloudflareAccounts(Protocol):
    """One Cloudflare client per token, shared budgets, and registry clients."""

    def for_token(self, api_token: str, /) -> CloudflareClient: ...

    async def for_environment(self, environment: str, /) -> CloudflareClient: ...

    def registry(self) -> RegistryClient: ...


class Credentials(Protocol):
    """An environment's Cloudflare credentials (`api_token` may be a pydantic SecretStr)."""

    @property
    def account_id(self) -> str | None: ...

    @property
    def api_token(self) -> Any: ...


class EngineSettings(Protocol):
    """The settings the engine reads (bot/settings.py)."""

    @property
    def container_registry_url(self) -> str: ...

    @property
    def workers_url_template(self) -> str: ...

    @property
    def build_poll_seconds(self) -> float: ...

    def cloudflare_credentials(self, environment: str, /) -> Credentials: ...


class EngineServices(Protocol):
    """What the engine takes from the services container (bot/services.py)."""

    @property
    def settings(self) -> EngineSettings: ...

    @property
    def deployments(self) -> DeploymentStore: ...

    @property
    def github(self) -> GitHubInstallations: ...
