"""Build an Engine for tests without importing the simulators (the crash-test child uses it)."""

from __future__ import annotations

from bot.cloudflare import CloudflareClients
from bot.engine import Engine
from bot.github.app import GitHubUnavailable
from bot.services import EngineParts
from bot.settings import Settings
from bot.store.deployments import DeploymentStore

ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
TOKEN = "sim-deploy-token-0123456789abcdef"


def make_engine(settings: Settings, database, *, github=None, lease_seconds: float = 5,
                heartbeat_seconds: float = 1, clock=None, holder: str | None = None,
                fast: bool = True, timeout: float = 30.0, sleep=None) -> tuple[Engine, CloudflareClients]:
    parts = EngineParts(settings, DeploymentStore(database), github if github is not None else GitHubUnavailable())
    options = {"backoff_base": 0.01, "jitter": 0.01} if fast else {}
    extra = {"sleep": sleep} if sleep is not None else {}
    clients = CloudflareClients(settings, client_options=options, timeout=timeout, **extra)
    engine = Engine(parts, cloudflare=clients, lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds,
                    clock=clock, poll_seconds=0.05, health_interval=0.05, holder=holder)
    return engine, clients
