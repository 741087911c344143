"""One deployment's run: its steps in order, each transition persisted, failure and roll-back.

A `DeploymentRun` owns everything that belongs to one run (the deployment, its step state, its
step context and the log lines a step buffers until its transition is written), so nothing of a
run lives on the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.cloudflare.client import CloudflareClient
from bot.cloudflare.errors import CloudflareError
from bot.engine.appspec import AppSpec
from bot.engine.artifact_cache import ArtifactCache
from bot.engine.artifacts import BuildSource
from bot.engine.build_gate import wait_started
from bot.engine.events import EventHub
from bot.engine.failures import step_failure
from bot.engine.journal import Journal, PendingLog
from bot.engine.model import (
    STEP_NAMES,
    Deployment,
    DeploymentError,
    LogLevel,
    Release,
    Step,
    new_release_id,
)
from bot.engine.ports import Clock, CloudflareAccounts, EngineSettings
from bot.engine.preview_spec import credentials_environment
from bot.engine.preview_steps import pipeline_for
from bot.engine.records import deployment_of
from bot.engine.rollback import ROLLBACK_PIPELINE, release_containers, restore_release
from bot.engine.scheduler import LeaseLost
from bot.engine.source import RepoSource
from bot.engine.state import StepState
from bot.engine.steps import PIPELINE, StepContext
from bot.errors import FlareshipError
from bot.logs import correlated, redact
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)


@dataclass
class RunEnvironment:
    """What a run needs from the engine that started it."""

    store: DeploymentStore
    journal: Journal
    events: EventHub
    clock: Clock
    settings: EngineSettings
    cloudflare: CloudflareAccounts
    connect: Callable[[str], Awaitable[tuple[CloudflareClient, str]]]
    load_source: Callable[[str, str, int | None], Awaitable[RepoSource]]
    http: httpx.AsyncClient
    health_interval: float
    stopping: Callable[[], bool]
    #: An installation's GitHub client (build artifacts); None where GitHub is not configured.
    github: Callable[[int | None], Awaitable[Any]] | None = None
    #: Downloaded build artifacts (the wait before the lease filled it; steps read from it).
    artifacts: ArtifactCache | None = None


async def run_deployment(env: RunEnvironment, deployment_id: str, lost: asyncio.Event) -> None:
    """Run (or resume) a queued or in-progress deployment; anything else is left alone."""
    row = await env.store.get(deployment_id)
    if row is None or row.status not in ("queued", "in_progress"):
        return
    run = DeploymentRun(env, deployment_of(row), StepState.from_json(row.state))
    with correlated(run.deployment.correlation_id):
        await run.execute(lost)


class DeploymentRun:
    """The run of one deployment by this process (a resume is a new run of the same deployment)."""

    def __init__(self, env: RunEnvironment, deployment: Deployment, state: StepState) -> None:
        self.env = env
        self.deployment = deployment
        self.state = state
        self.pending: list[PendingLog] = []
        self.current_step: str | None = None
        self.ctx: StepContext | None = None

    # -- persistence -------------------------------------------------------------------

    async def save(self, *, log_line: str | None = None, level: LogLevel = "info", step: str | None = None,
                   release: Release | None = None) -> tuple[bool, bool]:
        """Persist the deployment and state with the buffered log lines (one transaction)."""
        pending, self.pending = self.pending, []
        return await self.env.journal.save(self.deployment, self.state, pending, log_line=log_line, level=level,
                                           step=step, release=release)

    async def step_log(self, message: str, level: LogLevel = "info") -> None:
        """A step's log line, buffered: written with the step's completion (one transaction per step)."""
        self.pending.append((self.env.clock(), level, redact(message), self.current_step))

    async def log(self, message: str, level: LogLevel = "info", step: str | None = None) -> None:
        await self.env.journal.log(self.deployment, message, level=level, step=step)

    async def emit(self, kind: Any, step: Step | None = None) -> None:
        await self.env.events.emit(kind, self.deployment, step=step)

    # -- the run -----------------------------------------------------------------------

    def _spec(self) -> AppSpec:
        data = dict(self.deployment.config)
        if self.state.inline_modules:
            data["inline_modules"] = self.state.inline_modules
        return AppSpec.model_validate(data)

    def _other_owners(self, account_id: str) -> Callable[[], Awaitable[set[str]]]:
        d = self.deployment

        async def owners() -> set[str]:
            return {t for t in await self.env.store.script_owners(d.script_name, account_id) if t != d.target}
        return owners

    async def _load_source(self) -> RepoSource | None:
        d = self.deployment
        return await self.env.load_source(d.repository, d.sha, d.installation_id)  # type: ignore[arg-type]

    def _build_source(self, spec: AppSpec) -> BuildSource | None:
        """The app's CI artifact: usually downloaded by the wait before the lease (state.build_artifact);
        otherwise waited for here, the deadline running from the persisted start of the wait."""
        d, env = self.deployment, self.env
        if spec.build is None or not d.repository or not d.sha:
            return None

        async def github() -> Any:
            if env.github is None:
                raise FlareshipError("SYS_002", "GitHub is not configured; cannot read the build artifact")
            return await env.github(d.installation_id)

        async def announce(message: str) -> None:
            await self.log(message, step=self.current_step)  # written at once: the check run shows it
        state = self.state

        def remember(record: dict[str, Any]) -> None:
            state.build_artifact = record  # persisted with the step's completion
        return BuildSource(github=github, repository=d.repository, sha=d.sha, build=spec.build,
                           main=spec.main_module, started_at=wait_started(state, d, d.started_at or env.clock()),
                           clock=env.clock, announce=announce, cache=env.artifacts, record=state.build_artifact,
                           remember=remember, poll_seconds=env.settings.build_poll_seconds)

    async def execute(self, lost: asyncio.Event) -> None:
        d, env = self.deployment, self.env
        if d.status == "queued":
            d.status = "in_progress"
            d.started_at = d.started_at or env.clock()
            d.waiting_for_build = []  # its check run stops saying it waits for the build
            await self.save(log_line=f"Deployment to {d.environment} started ({d.kind}, attempt {d.attempt})")
            await self.emit("status")
        else:
            await self.log("Resuming after an interruption", level="warn")
        spec = self._spec()
        try:
            client, account_id = await env.connect(credentials_environment(d.environment, d.config))
        except FlareshipError as exc:
            await self._fail(exc, STEP_NAMES[1])
            return
        ctx = self.ctx = StepContext(
            deployment=d, spec=spec, state=self.state, client=client, clients=env.cloudflare,
            account_id=account_id, settings=env.settings, http=env.http, log=self.step_log,
            load_source=self._load_source, today=env.clock().date(), dry_run=d.options.dry_run,
            health_interval=env.health_interval, other_owners=self._other_owners(account_id),
            build=self._build_source(spec),
        )
        if self.state.rolling_back:
            await self._rollback_on_failure(resumed=True)
            return
        pipeline = ROLLBACK_PIPELINE if d.kind == "rollback" else pipeline_for(spec, PIPELINE)
        finished: Step | None = None  # completed, persisted with the next transition
        for step in d.steps:
            if step.status in ("completed", "skipped"):
                continue
            if lost.is_set():
                raise LeaseLost()
            if env.stopping():
                if finished is not None:
                    await self.save()
                return
            self.current_step = step.name
            step.status = "running"
            step.started_at = env.clock()
            step.ended_at = None
            step.attempt += 1
            step.error = step.error_code = None
            # One transaction persists the previous step's completion (and its logs) and this
            # step's start, and reads a pending cancel request.
            _updated, cancel = await self.save()
            if finished is not None:
                await self.emit("step", step=finished.model_copy())
                finished = None
            if cancel:
                step.status, step.started_at, step.attempt = "pending", None, step.attempt - 1
                await self._cancelled()
                return
            await self.emit("step", step=step.model_copy())
            try:
                outcome = await pipeline[step.name](ctx)
            except FlareshipError as exc:
                await self._step_failed(step, exc)
                return
            except CloudflareError as exc:
                await self._step_failed(step, step_failure(exc, step.name))
                return
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as exc:  # a bug or an unexpected answer: fail cleanly, with the correlation id
                log.exception("step %s of %s raised", step.name, d.id)
                await self._step_failed(step, FlareshipError("SYS_001", f"{type(exc).__name__}: {exc}",
                                                             step=step.name))
                return
            step.status = "completed" if outcome != "skipped" else "skipped"
            step.ended_at = env.clock()
            finished = step
        await self._complete()
        if finished is not None:
            await self.emit("step", step=finished.model_copy())

    # -- endings -----------------------------------------------------------------------

    async def _complete(self) -> None:
        d, state = self.deployment, self.state
        now = self.env.clock()
        if state.url:
            d.urls[d.environment] = state.url
        if not d.options.dry_run:
            release = Release(
                id=state.release_id or new_release_id(), target=d.target, environment=d.environment,
                script_name=d.script_name, version_id=state.version_id, image=state.image,
                image_digest=state.image_digest, container_app_id=state.container_app_id,
                migration_tag=state.migration_tag, sha=d.sha, deployment_id=d.id, created_at=now,
                containers=release_containers(state),
            )
            state.release_id = release.id
            d.release = release
        d.status = "completed"
        d.ended_at = now
        await self.save(release=d.release if not d.options.dry_run else None,
                        log_line="Deployment completed" + (f": {d.urls[d.environment]}"
                                                           if d.urls.get(d.environment) else ""))
        await self.emit("status")

    async def _cancelled(self) -> None:
        d = self.deployment
        d.status = "cancelled"
        d.ended_at = self.env.clock()
        for s in d.steps:
            if s.status == "pending":
                s.status = "skipped"
        await self.save(log_line="Cancelled between steps", level="warn")
        await self.emit("status")

    async def _step_failed(self, step: Step, exc: FlareshipError) -> None:
        step.status = "failed"
        step.ended_at = self.env.clock()
        step.error = exc.message
        step.error_code = exc.code
        await self._fail(exc, step.name, failed_step=step)

    async def _fail(self, exc: FlareshipError, step_name: str | None, failed_step: Step | None = None) -> None:
        d, state, ctx = self.deployment, self.state, self.ctx
        d.error = DeploymentError(code=exc.code, message=exc.message, step=exc.step or step_name,
                                  correlation_id=d.correlation_id)
        await self.save(log_line=f"{step_name or 'Deployment'} failed: {exc.code} {exc.message}", level="error",
                        step=step_name)
        if failed_step is not None:
            await self.emit("step", step=failed_step.model_copy())
        touched = any(s.status in ("completed", "failed") for s in d.steps[3:]) or bool(state.image)
        if (ctx is not None and d.kind == "deploy" and d.options.rollback_on_failure and not d.options.dry_run
                and touched and d.previous_release is not None):
            state.rolling_back = True
            await self.save()
            await self._rollback_on_failure()
            return
        if ctx is not None and d.options.rollback_on_failure and d.previous_release is None and d.kind == "deploy":
            await self.log("No previous release to roll back to", level="warn", step=step_name)
        d.status = "failed"
        d.ended_at = self.env.clock()
        await self.save()
        await self.emit("status")

    async def _rollback_on_failure(self, resumed: bool = False) -> None:
        d, state, ctx = self.deployment, self.state, self.ctx
        target = d.previous_release
        assert ctx is not None and target is not None
        await self.log(f"Rolling back to release {target.id} (version {target.version_id})"
                       + (" (resumed)" if resumed else ""), level="warn")
        try:
            await restore_release(ctx, target)
        except FlareshipError as exc:
            original = d.error
            d.error = DeploymentError(
                code="DEPLOY_007",
                message=f"{exc.message} (after {original.code if original else 'a failure'}: "
                        f"{original.message if original else ''})",
                step=original.step if original else None, correlation_id=d.correlation_id)
            await self.log(d.error.message, level="error")
            state.rolling_back = False
            d.status = "failed"
        else:
            state.rolling_back = False
            d.status = "rolled_back"
            await self.log(f"Rolled back to release {target.id}")
        d.ended_at = self.env.clock()
        await self.save()
        await self.emit("status")
