"""The Engine: prepare, queue, run, retry, cancel and roll back deployments (contract signatures).

Work in progress: the bodies land in the next commits; the signatures are the contract.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.engine.model import Deployment, DeploymentEvent, DeployOptions, LogLine, PrepareRequest, Release


class Engine:
    def __init__(self, services: Any, *, cloudflare: Any, lease_seconds: float = 30,
                 heartbeat_seconds: float = 10, clock: Callable[[], datetime] | None = None,
                 poll_seconds: float = 1.0, health_interval: float = 1.0) -> None:
        self.services = services
        self.cloudflare = cloudflare

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def validate(self, environment: str, credentials: Any) -> dict: raise NotImplementedError
    async def verify_token(self, api_token: str, required_scopes: list[str]) -> dict: raise NotImplementedError
    async def prepare(self, req: PrepareRequest) -> Deployment: raise NotImplementedError
    async def deploy(self, deployment_id: str, options: DeployOptions) -> Deployment: raise NotImplementedError
    async def request_deploy(self, req: PrepareRequest, options: DeployOptions) -> Deployment: raise NotImplementedError
    async def get(self, deployment_id: str) -> Deployment: raise NotImplementedError
    async def list(self, *, environment: str | None = None, repository: str | None = None, status: str | None = None,
                   limit: int = 50, before: str | None = None) -> list[Deployment]: raise NotImplementedError
    async def retry(self, deployment_id: str, *, step_name: str | None = None, max_retries: int | None = None) -> Deployment: raise NotImplementedError
    async def rollback(self, deployment_id: str, *, reason: str | None = None, target_version: str | None = None,
                       actor: str | None = None, trigger: str = "api") -> Deployment: raise NotImplementedError
    async def cancel(self, deployment_id: str) -> Deployment: raise NotImplementedError
    async def logs(self, deployment_id: str, *, after: int = 0) -> list[LogLine]: raise NotImplementedError
    async def queue_position(self, deployment_id: str) -> int | None: raise NotImplementedError
    async def counts(self) -> dict: raise NotImplementedError
    async def lock(self, target: str, environment: str, *, actor: str, reason: str | None = None) -> dict: raise NotImplementedError
    async def unlock(self, target: str, environment: str, *, actor: str) -> bool: raise NotImplementedError
    async def get_lock(self, target: str, environment: str) -> dict | None: raise NotImplementedError
    async def live_release(self, target: str, environment: str) -> Release | None: raise NotImplementedError
    def subscribe(self, callback: Callable[[DeploymentEvent], Awaitable[None]]) -> Callable[[], None]: raise NotImplementedError
