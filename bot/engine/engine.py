"""The Engine: the one object front doors call to prepare, queue, run, retry, cancel and roll back.

A thin facade over the engine's parts, each in its own module: `credentials` (probing tokens),
`prepare` (pre-flight, persisting), `control` (queue, retry, cancel, rollback), `records`
(reads, locks), `scheduler` (leases, heartbeat, resume), `run` (one deployment's steps) and
`events` (subscribers).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot.engine import credentials as credential_checks
from bot.engine.artifact_cache import ArtifactCache, default_root
from bot.engine.build_gate import BuildGate
from bot.engine.control import Control
from bot.engine.events import EventHub
from bot.engine.journal import Journal
from bot.engine.model import (
    Deployment,
    DeploymentEvent,
    DeployOptions,
    LogLine,
    PrepareRequest,
    Release,
)
from bot.engine.ports import Clock, CloudflareAccounts, EngineServices
from bot.engine.prepare import Preparer
from bot.engine.records import Records
from bot.engine.run import RunEnvironment, run_deployment
from bot.engine.scheduler import Scheduler


def _utc() -> datetime:
    return datetime.now(UTC)


class Engine:
    """The deploy engine every front door calls."""

    def __init__(
        self,
        services: EngineServices,
        *,
        cloudflare: CloudflareAccounts,
        lease_seconds: float = 30,
        heartbeat_seconds: float = 10,
        clock: Clock | None = None,
        poll_seconds: float = 1.0,
        health_interval: float = 1.0,
        holder: str | None = None,
        max_concurrent: int = 64,
        artifact_cache: ArtifactCache | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.cloudflare = cloudflare
        self.clock = clock or _utc
        #: Seconds between health probes of a deployed Worker.
        self.health_interval = health_interval
        self.store = services.deployments
        self.events = EventHub()
        self.records = Records(self.store, self.clock)
        self.journal = Journal(self.store, self.events, self.clock)
        self.preparer = Preparer(services, cloudflare, self.store, self.records, self.clock)
        #: Downloaded build artifacts, shared by the wait and the steps (one download per deployment).
        self.artifacts = artifact_cache or ArtifactCache(default_root())
        self.builds = BuildGate(self.store, self.journal, self.clock,
                                self._github_client if services.github.configured else None, self.artifacts,
                                poll_seconds=self.settings.build_poll_seconds)
        self.scheduler = Scheduler(
            self.store, self._run, holder=holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            clock=self.clock, lease=timedelta(seconds=lease_seconds), heartbeat_seconds=heartbeat_seconds,
            poll_seconds=poll_seconds, max_concurrent=max_concurrent, ready=self.builds.ready)
        self.control = Control(self.store, self.records, self.journal, self.events, self.clock, self.scheduler.wake)
        self._http: httpx.AsyncClient | None = None

    @property
    def holder(self) -> str:
        """This engine's name on the leases it holds."""
        return self.scheduler.holder

    @property
    def poll_seconds(self) -> float:
        """Seconds between scheduler passes when nothing wakes it."""
        return self.scheduler.poll_seconds

    @poll_seconds.setter
    def poll_seconds(self, value: float) -> None:
        self.scheduler.poll_seconds = value

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler; it resumes in-flight deployments whose lease is free or expired."""
        if self.scheduler.started:
            return
        self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=True)
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling; in-flight deployments stop between steps and release their leases."""
        await self.scheduler.stop()
        await self.events.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _run(self, deployment_id: str, lost: asyncio.Event) -> None:
        assert self._http is not None, "the engine runs deployments only between start() and stop()"
        env = RunEnvironment(
            store=self.store, journal=self.journal, events=self.events, clock=self.clock, settings=self.settings,
            cloudflare=self.cloudflare, connect=self.preparer.client_for, load_source=self.preparer.source,
            http=self._http, health_interval=self.health_interval, stopping=lambda: self.scheduler.stopping,
            github=self._github_client, artifacts=self.artifacts)
        await run_deployment(env, deployment_id, lost)

    async def _github_client(self, installation_id: int | None) -> Any:
        """An installation's GitHub client (without an App, GitHubUnavailable answers SYS_002)."""
        return await self.services.github.client(installation_id)  # type: ignore[arg-type]  # a None id fails in the adapter

    def build_finished(self) -> None:
        """A workflow run finished somewhere: deployments waiting for a build look again now."""
        self.builds.wake()
        self.scheduler.wake()

    # -- credentials -------------------------------------------------------------------

    async def validate(self, environment: str, credentials: Any) -> dict[str, Any]:
        """Check a token + account: 401 bad token, 422 bad account id, 403 cannot deploy Workers."""
        return await credential_checks.validate(self.cloudflare, environment, credentials)

    async def verify_token(self, api_token: str, required_scopes: list[str]) -> dict[str, Any]:
        """`/auth/cloudflare/verify`: 401 invalid token, 403 naming a missing required scope."""
        return await credential_checks.verify_token(self.cloudflare, api_token, required_scopes)

    # -- prepare and queue -------------------------------------------------------------

    async def prepare(self, req: PrepareRequest, *, refuse_if_busy: bool = True) -> Deployment:
        """Pre-flight checks + cost; persists a deployment with status "initiated"."""
        return await self.preparer.prepare(req, refuse_if_busy=refuse_if_busy)

    async def deploy(self, deployment_id: str, options: DeployOptions) -> Deployment:
        """Enqueue a prepared deployment (FIFO per target + environment) and return at once."""
        return await self.control.deploy(deployment_id, options)

    async def request_deploy(self, req: PrepareRequest, options: DeployOptions) -> Deployment:
        """Prepare (even while the environment is busy) and enqueue in one call."""
        d = await self.prepare(req, refuse_if_busy=False)
        return await self.deploy(d.id, options)

    async def queue_position(self, deployment_id: str) -> int | None:
        """0 = running (or next to run), 1 = first waiting behind it, ...; None when not queued."""
        return await self.records.queue_position(deployment_id)

    async def counts(self) -> dict[str, int]:
        return await self.records.counts()

    # -- reads -------------------------------------------------------------------------

    async def get(self, deployment_id: str) -> Deployment:
        return await self.records.get(deployment_id)

    async def list(self, *, environment: str | None = None, repository: str | None = None,
                   status: str | None = None, limit: int = 50, before: str | None = None) -> builtins.list[Deployment]:
        return await self.records.list(environment=environment, repository=repository, status=status,
                                       limit=limit, before=before)

    async def logs(self, deployment_id: str, *, after: int = 0) -> builtins.list[LogLine]:
        return await self.records.logs(deployment_id, after=after)

    async def live_release(self, target: str, environment: str) -> Release | None:
        return await self.records.live_release(target, environment)

    # -- locks -------------------------------------------------------------------------

    async def lock(self, target: str, environment: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        return await self.records.lock(target, environment, actor=actor, reason=reason)

    async def unlock(self, target: str, environment: str, *, actor: str) -> bool:
        removed = await self.records.unlock(target, environment, actor=actor)
        if removed:
            self.scheduler.wake()
        return removed

    async def get_lock(self, target: str, environment: str) -> dict[str, Any] | None:
        return await self.records.get_lock(target, environment)

    # -- retry / cancel / rollback -----------------------------------------------------

    async def retry(self, deployment_id: str, *, step_name: str | None = None,
                    max_retries: int | None = None) -> Deployment:
        """Resume a failed deployment at its failed step (or `step_name`); DEPLOY_010 otherwise."""
        return await self.control.retry(deployment_id, step_name=step_name, max_retries=max_retries)

    async def cancel(self, deployment_id: str) -> Deployment:
        """Cancel a prepared/queued deployment now, a running one between steps."""
        return await self.control.cancel(deployment_id)

    async def rollback(self, deployment_id: str, *, reason: str | None = None, target_version: str | None = None,
                       actor: str | None = None, trigger: str = "api") -> Deployment:
        """Queue a rollback deployment returning the environment to the release before `deployment_id`."""
        return await self.control.rollback(deployment_id, reason=reason, target_version=target_version,
                                           actor=actor, trigger=trigger)

    # -- subscribers -------------------------------------------------------------------

    def subscribe(self, callback: Callable[[DeploymentEvent], Awaitable[None]]) -> Callable[[], None]:
        """Deliver every deployment event to `callback`; returns the function that unsubscribes."""
        return self.events.subscribe(callback)
