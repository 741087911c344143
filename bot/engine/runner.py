"""The Engine: prepare, queue, run, retry, cancel and roll back deployments.

One active deployment per (target, environment), held as a lease row in the store with a
heartbeat and an expiry: a process that dies leaves a lease that expires, and any engine (this
process after a restart, or another replica) takes it over and resumes the deployment at the
step it was in. Every step transition is persisted before and after the step runs; logs are
persisted with increasing ids and pushed to subscribers through bounded per-subscriber queues.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from bot.cloudflare.errors import AuthenticationError, CloudflareError, NotFound, PermissionDenied, TokenInactive
from bot.engine import images
from bot.engine.appspec import AppSpec, resolve_repository_app, resolve_seed_app
from bot.engine.cost import estimate_monthly_cost
from bot.engine.model import (
    STEP_NAMES,
    Deployment,
    DeploymentError,
    DeploymentEvent,
    DeployOptions,
    LogLine,
    PrepareRequest,
    Release,
    Step,
    new_deployment_id,
    new_release_id,
)
from bot.engine.preflight import Facts, cloudflare_facts, evaluate, raise_first
from bot.engine.source import RepoSource, load_repository, main_module_exports, modules_for
from bot.engine.steps import (
    PIPELINE,
    ROLLBACK_PIPELINE,
    StepContext,
    cloudflare_failure,
    migration_guard,
    restore_release,
)
from bot.errors import FlareshipError
from bot.logs import correlated, new_correlation_id, redact, register_secret
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")
SUBSCRIBER_QUEUE = 1000


def _utc() -> datetime:
    return datetime.now(timezone.utc)


class _Subscriber:
    def __init__(self, callback: Callable[[DeploymentEvent], Awaitable[None]]):
        self.callback = callback
        self.queue: asyncio.Queue[DeploymentEvent] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.task: asyncio.Task | None = None
        self.dropped = 0

    def offer(self, event: DeploymentEvent) -> None:
        """Never blocks: a full queue drops its oldest event."""
        if self.queue.full():
            try:
                self.queue.get_nowait()
                self.dropped += 1
            except asyncio.QueueEmpty:
                pass
        self.queue.put_nowait(event)

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.callback(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("deployment subscriber failed on a %s event", event.kind)


class _LeaseLost(Exception):
    pass


class Engine:
    """The deploy engine every front door calls (see the contract in the project brief)."""

    def __init__(
        self,
        services: Any,
        *,
        cloudflare: Any,
        lease_seconds: float = 30,
        heartbeat_seconds: float = 10,
        clock: Callable[[], datetime] | None = None,
        poll_seconds: float = 1.0,
        health_interval: float = 1.0,
        holder: str | None = None,
        max_concurrent: int = 64,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.cloudflare = cloudflare
        self.lease = timedelta(seconds=lease_seconds)
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock or _utc
        self.poll_seconds = poll_seconds
        self.health_interval = health_interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.store = DeploymentStore(services.database)
        self._subscribers: list[_Subscriber] = []
        self._running: dict[tuple[str, str], asyncio.Task] = {}
        self._scheduler: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._http: httpx.AsyncClient | None = None
        self._sources: OrderedDict[tuple[str, str], RepoSource] = OrderedDict()
        self._specs: dict[str, AppSpec] = {}
        self._pending_logs: dict[str, list[tuple[datetime, str, str, str | None]]] = {}
        #: Deployments run at once by this process (others stay queued, holding no lease).
        self.max_concurrent = max_concurrent

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler; it resumes in-flight deployments whose lease is free or expired."""
        if self._scheduler is not None:
            return
        self._stopping = False
        self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=True)
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="flareship-engine-scheduler")

    async def stop(self) -> None:
        """Stop scheduling; in-flight deployments stop between steps and release their leases."""
        self._stopping = True
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
            self._scheduler = None
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subscribers:
            if sub.task:
                sub.task.cancel()
        await asyncio.gather(*(s.task for s in self._subscribers if s.task), return_exceptions=True)
        self._subscribers.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- credentials -------------------------------------------------------------------

    async def validate(self, environment: str, credentials: Any) -> dict:
        """Check a token + account: 401 bad token, 422 bad account id, 403 cannot deploy Workers."""
        token = credentials.api_token
        token = token.get_secret_value() if hasattr(token, "get_secret_value") else token
        account_id = credentials.account_id or ""
        if not ACCOUNT_ID.match(account_id):
            raise FlareshipError("SYS_006", "accountId must be 32 lowercase hexadecimal characters", status=422,
                                 details={"field": "credentials.accountId"})
        register_secret(token)
        client = self.cloudflare.for_token(token)
        try:
            await client.verify_token(account_id)
            report = await client.probe_permissions(account_id)
        except TokenInactive as exc:
            raise FlareshipError("AUTH_003", f"The Cloudflare token is {exc.token_status}") from None
        except AuthenticationError as exc:
            raise FlareshipError("AUTH_003", exc.public_message()) from None
        except NotFound as exc:
            raise FlareshipError("AUTH_004", f"The token cannot access account {account_id} ({exc.public_message()})",
                                 details={"missingPermission": "Account:Account Settings:Read"}) from None
        except PermissionDenied as exc:
            raise FlareshipError("AUTH_004", exc.public_message()) from None
        except CloudflareError as exc:
            raise exc.to_flareship(None) from None
        if not report.granted.get("workers"):
            raise FlareshipError("AUTH_004", "The Cloudflare token cannot deploy Workers on this account",
                                 details={"missingPermissions": report.missing_permissions})
        try:
            account = await client.get_account(account_id)
            plan = await client.account_plan(account_id, account=account,
                                             containers_ok=True if report.granted.get("containers") else
                                             (False if "containers" in report.plan_blocked else None))
        except CloudflareError as exc:
            raise exc.to_flareship(None) from None
        return {
            "valid": True,
            "permissions": {
                "workers": bool(report.granted.get("workers")),
                "containers": bool(report.granted.get("containers")),
                "durableObjects": bool(report.granted.get("durableObjects")),
            },
            "accountInfo": {"id": account.get("id", account_id), "name": account.get("name", ""), "type": plan.type},
            "workersPlan": plan.workers_plan,
        }

    async def verify_token(self, api_token: str, required_scopes: list[str]) -> dict:
        """`/auth/cloudflare/verify`: 401 invalid token, 403 naming a missing required scope."""
        from bot.cloudflare.accounts import PROBES

        register_secret(api_token)
        client = self.cloudflare.for_token(api_token)
        try:
            info = await client.verify_token(None)
            try:
                accounts = await client.list_accounts()
            except (PermissionDenied, NotFound):
                accounts = []
            scopes: set[str] = set()
            for account in accounts[:5]:
                report = await client.probe_permissions(account["id"])
                for name, ok in report.granted.items():
                    if ok:
                        scopes.add(PROBES[name][1])
                        if PROBES[name][1].endswith(":Edit"):
                            scopes.add(PROBES[name][1][: -len(":Edit")] + ":Read")
        except TokenInactive as exc:
            raise FlareshipError("AUTH_003", f"The Cloudflare token is {exc.token_status}") from None
        except AuthenticationError as exc:
            raise FlareshipError("AUTH_003", exc.public_message()) from None
        except CloudflareError as exc:
            raise exc.to_flareship(None) from None
        missing = [s for s in required_scopes if s not in scopes]
        if missing:
            raise FlareshipError("AUTH_004", "The Cloudflare token lacks: " + ", ".join(missing),
                                 details={"missingScopes": missing})
        return {
            "valid": True,
            "user": {"id": info.id, "email": None},
            "scopes": sorted(scopes),
            "accounts": [{"id": a.get("id"), "name": a.get("name"), "type": a.get("type", "standard")} for a in accounts],
        }

    # -- prepare -----------------------------------------------------------------------

    async def _client_for(self, environment: str):
        credentials = self.settings.cloudflare_credentials(environment)
        if not credentials.account_id:
            raise FlareshipError("AUTH_003", f"No Cloudflare account id configured for environment {environment!r} "
                                 f"(set CLOUDFLARE_ACCOUNT_ID or CLOUDFLARE_ACCOUNT_ID_{environment.upper()})")
        return await self.cloudflare.for_environment(environment), credentials.account_id

    async def _source(self, repository: str, sha: str, installation_id: int | None) -> RepoSource:
        key = (repository, sha)
        if key in self._sources:
            self._sources.move_to_end(key)
            return self._sources[key]
        github = self.services.github
        if github is None:
            raise FlareshipError("SYS_002", "GitHub is not configured; cannot read the repository")
        gh = await github.client(installation_id)
        source = await load_repository(gh, repository, sha)
        self._sources[key] = source
        while len(self._sources) > 16:
            self._sources.popitem(last=False)
        return source

    async def _resolve_spec(self, req: PrepareRequest) -> tuple[AppSpec, RepoSource | None]:
        if req.app is not None:
            spec = req.app if isinstance(req.app, AppSpec) else AppSpec.model_validate(req.app)
            if spec.environment != req.environment:
                raise FlareshipError("DEPLOY_001", f"the app was resolved for {spec.environment!r}, "
                                     f"not {req.environment!r}", details={"field": "environment"})
            return spec, None
        if req.config is not None:
            return resolve_seed_app(req.config, req.environment, req.repo_config), None
        if req.repository and req.sha:
            source = await self._source(req.repository, req.sha, req.installation_id)
            config = source.config()
            spec = resolve_repository_app(config, req.environment, repository=req.repository, sha=req.sha,
                                          wrangler=source.wrangler(), policy=req.repo_config)
            return spec, source
        raise FlareshipError("DEPLOY_001", "nothing to deploy: give an app config, or a repository and SHA",
                             details={"field": "config"})

    async def prepare(self, req: PrepareRequest, *, refuse_if_busy: bool = True) -> Deployment:
        """Pre-flight checks + cost; persists a deployment with status "initiated"."""
        spec, source = await self._resolve_spec(req)
        target = req.repository or spec.name
        client, account_id = await self._client_for(req.environment)
        facts = Facts()
        lock = await self.store.get_lock(target, req.environment)
        if lock is not None:
            facts.lock = {"actor": lock.actor, "reason": lock.reason, "created_at": lock.created_at.isoformat()}
        if refuse_if_busy:
            lease = await self.store.get_lease(target, req.environment)
            if lease is not None and lease.expires_at > self.clock():
                facts.busy_with = lease.deployment_id
        facts.other_owners = {t for t in await self.store.script_owners(spec.script_name, account_id) if t != target}
        try:
            await cloudflare_facts(spec, client, account_id, facts)
        except FlareshipError as exc:
            if exc.code == "DEPLOY_002":
                raise
            raise FlareshipError(exc.code if exc.code.startswith(("AUTH", "SYS")) else "SYS_002", exc.message,
                                 details=exc.details) from None
        modules = modules_for(spec, source)
        facts.exported_classes = main_module_exports(modules)
        if spec.container is not None:
            facts.image_digest, facts.image_error = await self._image_digest(client, account_id, spec)
        checks, problems = evaluate(spec, facts, self.clock().date())
        raise_first(checks, problems)
        now = self.clock()
        deployment = Deployment(
            id=new_deployment_id(),
            environment=req.environment,
            app_name=spec.name,
            script_name=spec.script_name,
            target=target,
            repository=req.repository,
            sha=req.sha,
            ref=req.ref,
            pull_request=req.pull_request,
            installation_id=req.installation_id,
            trigger=req.trigger,
            actor=req.actor,
            status="initiated",
            checks=checks,
            estimated_cost=estimate_monthly_cost(spec),
            previous_release=await self.live_release(target, req.environment),
            correlation_id=new_correlation_id(),
            config=spec.snapshot(),
            created_at=now,
        )
        await self.store.insert(self._row(deployment, {"account_id": account_id,
                                                       "inline_modules": spec.inline_modules}, now,
                                          account_id=account_id))
        return deployment

    async def _image_digest(self, client, account_id: str, spec: AppSpec) -> tuple[str | None, str | None]:
        target = images.registry_target(self.settings.container_registry_url)
        try:
            image = images.parse_image(spec.container.image)
        except FlareshipError as exc:
            return None, exc.message
        try:
            registry = await images.registry_client_for(client, self.cloudflare, account_id, target)
            pinned = await images.resolve_digest(registry, image, target)
            return pinned.digest, None
        except CloudflareError as exc:
            images.forget_credentials(self.cloudflare, account_id, target)
            return None, exc.public_message()
        except httpx.HTTPError as exc:
            images.forget_credentials(self.cloudflare, account_id, target)
            return None, type(exc).__name__

    def _row(self, d: Deployment, state: dict, now: datetime, *, account_id: str | None = None) -> dict:
        row = {
            "id": d.id, "kind": d.kind, "target": d.target, "environment": d.environment,
            "script_name": d.script_name, "repository": d.repository, "sha": d.sha,
            "pull_request": d.pull_request, "status": d.status, "queued_at": None,
            "cancel_requested": False, "document": d.model_dump(mode="json"), "state": state,
            "created_at": d.created_at, "updated_at": now,
        }
        if account_id is not None:
            row["account_id"] = account_id
        return row

    # -- queue ---------------------------------------------------------------------------

    async def deploy(self, deployment_id: str, options: DeployOptions) -> Deployment:
        """Enqueue a prepared deployment (FIFO per target + environment) and return at once."""
        d = await self.get(deployment_id)
        if d.status in ("queued", "in_progress"):
            return d
        if d.status != "initiated":
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status}; only a prepared deployment can be deployed",
                                 details={"status": d.status})
        lock = await self.store.get_lock(d.target, d.environment)
        if lock is not None:
            raise FlareshipError("DEPLOY_009", f"{d.environment} is locked by {lock.actor} since "
                                 f"{lock.created_at.isoformat()}: {lock.reason or 'no reason given'}",
                                 details={"lockedBy": lock.actor, "reason": lock.reason})
        d.options = options
        d.max_attempts = max(1, options.max_retries)
        d.status = "queued"
        now = self.clock()
        ok, _cancel = await self._save(d, None, log="Queued" + (" (dry run)" if options.dry_run else ""),
                                       only_if_status=("initiated",), queued_at=now)
        if not ok:
            return await self.get(d.id)
        await self._emit("status", d)
        self._wake.set()
        queue = await self.store.queue(d.target, d.environment)
        d.queue_position = next((i for i, item in enumerate(queue) if item.id == d.id), None)
        return d

    async def request_deploy(self, req: PrepareRequest, options: DeployOptions) -> Deployment:
        d = await self.prepare(req, refuse_if_busy=False)
        return await self.deploy(d.id, options)

    async def queue_position(self, deployment_id: str) -> int | None:
        """0 = running (or next to run), 1 = first waiting behind it, ...; None when not queued."""
        row = await self.store.get(deployment_id)
        if row is None or row.status not in ("queued", "in_progress"):
            return None
        for i, item in enumerate(await self.store.queue(row.target, row.environment)):
            if item.id == deployment_id:
                return i
        return None

    async def counts(self) -> dict:
        return await self.store.counts()

    # -- reads -------------------------------------------------------------------------

    def _from_row(self, row) -> Deployment:
        return Deployment.model_validate(row.document)

    async def get(self, deployment_id: str) -> Deployment:
        row = await self.store.get(deployment_id)
        if row is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        d = self._from_row(row)
        if d.status in ("queued", "in_progress"):
            d.queue_position = await self.queue_position(d.id)
        return d

    async def list(self, *, environment: str | None = None, repository: str | None = None,
                   status: str | None = None, limit: int = 50, before: str | None = None) -> list[Deployment]:
        rows = await self.store.list(environment=environment, repository=repository, status=status,
                                     limit=max(1, min(limit, 500)), before=before)
        return [self._from_row(r) for r in rows]

    async def logs(self, deployment_id: str, *, after: int = 0) -> list[LogLine]:
        rows = await self.store.logs(deployment_id, after)
        if not rows and await self.store.get(deployment_id) is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        return [LogLine(id=r.id, timestamp=r.timestamp, level=r.level, message=r.message, step=r.step) for r in rows]

    async def live_release(self, target: str, environment: str) -> Release | None:
        row = await self.store.latest_release(target, environment)
        return self._release(row)

    @staticmethod
    def _release(row) -> Release | None:
        if row is None:
            return None
        return Release(**{k: getattr(row, k) for k in Release.model_fields})

    # -- locks -------------------------------------------------------------------------

    async def lock(self, target: str, environment: str, *, actor: str, reason: str | None = None) -> dict:
        row = await self.store.set_lock(target, environment, actor, reason, self.clock())
        return self._lock_dict(row)

    async def unlock(self, target: str, environment: str, *, actor: str) -> bool:
        removed = await self.store.delete_lock(target, environment)
        if removed:
            log.info("environment %s/%s unlocked by %s", target, environment, actor)
            self._wake.set()
        return removed

    async def get_lock(self, target: str, environment: str) -> dict | None:
        row = await self.store.get_lock(target, environment)
        return self._lock_dict(row) if row else None

    @staticmethod
    def _lock_dict(row) -> dict:
        return {"target": row.target, "environment": row.environment, "actor": row.actor, "reason": row.reason,
                "created_at": row.created_at.isoformat()}

    # -- retry / cancel / rollback -------------------------------------------------------

    async def retry(self, deployment_id: str, *, step_name: str | None = None,
                    max_retries: int | None = None) -> Deployment:
        """Resume a failed deployment at its failed step (or `step_name`); DEPLOY_010 otherwise."""
        row = await self.store.get(deployment_id)
        if row is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        d = self._from_row(row)
        if d.status not in ("failed", "rolled_back"):
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status}; only a failed deployment can be retried",
                                 details={"status": d.status})
        if max_retries is not None:
            d.max_attempts = max(1, max_retries)
        if d.attempt >= d.max_attempts:
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} has used {d.attempt} of {d.max_attempts} attempts",
                                 details={"attempt": d.attempt, "maxAttempts": d.max_attempts})
        if step_name is not None and step_name not in STEP_NAMES:
            raise FlareshipError("SYS_006", f"unknown step {step_name!r}; steps are: {', '.join(STEP_NAMES)}",
                                 details={"field": "stepName"})
        failed = next((s.name for s in d.steps if s.status == "failed"), None)
        start = step_name or failed or STEP_NAMES[0]
        index = STEP_NAMES.index(start)
        state = dict(row.state or {})
        if d.status == "rolled_back":
            # The rollback undid the container and the Worker version: redo them.
            index = min(index, STEP_NAMES.index("Deploying Durable Objects"))
            state.pop("uploaded_in_migration", None)
        state.pop("rolling_back", None)
        for s in d.steps[index:]:
            s.status, s.error, s.error_code, s.started_at, s.ended_at = "pending", None, None, None, None
        d.attempt += 1
        d.status = "queued"
        d.error = None
        d.ended_at = None
        now = self.clock()
        ok = await self.store.update_if(d.id, ("failed", "rolled_back"), status="queued", queued_at=now,
                                        cancel_requested=False, document=d.model_dump(mode="json"), state=state,
                                        updated_at=now)
        if not ok:
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} changed state; try again")
        await self._emit("status", d)
        await self._log(d, f"Retry {d.attempt}/{d.max_attempts} from step '{STEP_NAMES[index]}'")
        self._wake.set()
        return await self.get(d.id)

    async def cancel(self, deployment_id: str) -> Deployment:
        """Cancel a prepared/queued deployment now, a running one between steps."""
        d = await self.get(deployment_id)
        now = self.clock()
        if d.status in ("initiated", "queued"):
            d.status = "cancelled"
            d.ended_at = now
            for s in d.steps:
                if s.status == "pending":
                    s.status = "skipped"
            if await self.store.update_if(d.id, ("initiated", "queued"), status="cancelled",
                                          document=d.model_dump(mode="json"), updated_at=now):
                await self._emit("status", d)
                await self._log(d, "Cancelled before it started")
                return await self.get(d.id)
            d = await self.get(deployment_id)
        if d.status == "in_progress":
            await self.store.update(d.id, cancel_requested=True, updated_at=now)
            await self._log(d, "Cancellation requested; stopping after the current step")
            return await self.get(d.id)
        raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status} and cannot be cancelled",
                             details={"status": d.status})

    async def rollback(self, deployment_id: str, *, reason: str | None = None, target_version: str | None = None,
                       actor: str | None = None, trigger: str = "api") -> Deployment:
        """Queue a rollback deployment returning the environment to the release before `deployment_id`."""
        source = await self.get(deployment_id)
        if target_version:
            row = await self.store.find_release(source.target, source.environment, target_version)
            if row is None:
                raise FlareshipError("SYS_005", f"no release {target_version!r} for {source.target} / {source.environment}")
            target = self._release(row)
        else:
            target = source.previous_release if source.kind == "deploy" else None
            if source.kind == "rollback":
                target = source.previous_release
        if target is None:
            raise FlareshipError("DEPLOY_007", f"nothing to roll back to: {source.environment} had no release before "
                                 f"{source.id}", status=409)
        live = await self.live_release(source.target, source.environment)
        if live is not None:
            reason_refused = migration_guard(target, live.migration_tag)
            if reason_refused:
                raise FlareshipError("DEPLOY_007", f"Rollback refused: {reason_refused}", status=409,
                                     details={"targetRelease": target.id, "liveRelease": live.id})
        row = await self.store.get(source.id)
        state_src = row.state or {}
        now = self.clock()
        spec = dict(source.config)
        rb = Deployment(
            id=new_deployment_id(), kind="rollback", environment=source.environment, app_name=source.app_name,
            script_name=target.script_name, target=source.target, repository=source.repository, sha=target.sha,
            ref=source.ref, pull_request=source.pull_request, installation_id=source.installation_id,
            trigger=trigger, actor=actor, status="queued", previous_release=live, rollback_of=source.id,
            rollback_target=target, reason=reason, correlation_id=new_correlation_id(), config=spec, created_at=now,
            options=DeployOptions(rollback_on_failure=False, max_retries=1), max_attempts=1,
        )
        row_values = self._row(rb, {"account_id": state_src.get("account_id")}, now,
                                account_id=state_src.get("account_id"))
        row_values["queued_at"] = now
        await self.store.insert(row_values)
        await self._emit("status", rb)
        await self._log(rb, f"Rollback of {source.id} to release {target.id} queued" + (f": {reason}" if reason else ""))
        self._wake.set()
        return await self.get(rb.id)

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, callback: Callable[[DeploymentEvent], Awaitable[None]]) -> Callable[[], None]:
        sub = _Subscriber(callback)
        try:
            sub.task = asyncio.get_running_loop().create_task(sub.run())
        except RuntimeError:  # subscribed before the loop runs: started with the first event
            sub.task = None
        self._subscribers.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
            if sub.task:
                sub.task.cancel()

        return unsubscribe

    async def _emit(self, kind: str, d: Deployment, step: Step | None = None, line: LogLine | None = None) -> None:
        if not self._subscribers:
            return
        snapshot = d.model_copy(update={"steps": [s.model_copy() for s in d.steps], "urls": dict(d.urls)})
        event = DeploymentEvent(kind=kind, deployment=snapshot, step=step, log=line)
        for sub in list(self._subscribers):
            if sub.task is None:
                sub.task = asyncio.get_running_loop().create_task(sub.run())
            sub.offer(event)

    async def _log(self, d: Deployment, message: str, level: str = "info", step: str | None = None) -> LogLine:
        message = redact(message)
        now = self.clock()
        line_id = await self.store.add_log(d.id, now, level, message, step)
        line = LogLine(id=line_id, timestamp=now, level=level, message=message, step=step)
        log.log(logging.ERROR if level == "error" else logging.INFO, "[%s] %s", d.id, message)
        await self._emit("log", d, line=line)
        return line

    # -- scheduler -------------------------------------------------------------------------

    async def _schedule_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine scheduler pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except asyncio.TimeoutError:
                pass

    async def _schedule_once(self) -> None:
        for key in await self.store.active_keys():
            if len(self._running) >= self.max_concurrent or self._stopping:
                return
            if key in self._running:
                continue
            queue = await self.store.queue(*key)
            if not queue:
                continue
            head = queue[0]
            if head.status == "queued" and await self.store.get_lock(*key) is not None:
                continue  # a locked environment starts nothing new; it waits for /unlock
            if not await self.store.acquire_lease(key[0], key[1], self.holder, head.id, self.clock(), self.lease):
                continue
            task = asyncio.create_task(self._run_with_lease(key, head.id), name=f"deploy-{head.id}")
            self._running[key] = task

    async def _run_with_lease(self, key: tuple[str, str], deployment_id: str) -> None:
        lost = asyncio.Event()

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                if not await self.store.renew_lease(key[0], key[1], self.holder, self.clock(), self.lease):
                    lost.set()
                    return

        beat = asyncio.create_task(heartbeat())
        try:
            await self._run(deployment_id, lost)
        except asyncio.CancelledError:
            pass
        except _LeaseLost:
            log.warning("lease on %s/%s lost while running %s; another engine resumes it", *key, deployment_id)
        except Exception:
            log.exception("deployment %s crashed in the runner", deployment_id)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._running.pop(key, None)
            self._pending_logs.pop(deployment_id, None)
            if not lost.is_set():
                try:
                    await asyncio.shield(self.store.release_lease(key[0], key[1], self.holder))
                except Exception:
                    log.exception("could not release lease %s/%s", *key)
            self._wake.set()

    # -- running one deployment ---------------------------------------------------------------

    async def _save(self, d: Deployment, state: dict | None, *, log: str | None = None, level: str = "info",
                    step: str | None = None, release: Release | None = None,
                    only_if_status: tuple[str, ...] | None = None, **extra: Any) -> tuple[bool, bool]:
        """Persist the document (+ state), the buffered step log lines (+ `log`) and a release in ONE
        transaction, then publish the log lines. Returns (updated, cancel_requested)."""
        now = self.clock()
        values = {"status": d.status, "document": d.model_dump(mode="json"), "updated_at": now, **extra}
        if state is not None:
            values["state"] = state
        pending = self._pending_logs.pop(d.id, [])
        if log is not None:
            pending.append((now, level, redact(log), step))
        updated, cancel, ids = await self.store.update_and_log(
            d.id, values, pending, release.model_dump() if release is not None else None, only_if_status)
        if not updated:
            return False, False
        for line_id, (timestamp, lvl, message, line_step) in zip(ids, pending):
            logging.getLogger(__name__).log(logging.ERROR if lvl == "error" else logging.INFO,
                                            "[%s] %s", d.id, message)
            await self._emit("log", d, line=LogLine(id=line_id, timestamp=timestamp, level=lvl, message=message,
                                                    step=line_step))
        return True, cancel

    def _spec_of(self, d: Deployment, state: dict) -> AppSpec:
        data = dict(d.config)
        if state.get("inline_modules"):
            data["inline_modules"] = state["inline_modules"]
        return AppSpec.model_validate(data)

    async def _run(self, deployment_id: str, lost: asyncio.Event) -> None:
        row = await self.store.get(deployment_id)
        if row is None or row.status not in ("queued", "in_progress"):
            return
        d = self._from_row(row)
        state = dict(row.state or {})
        with correlated(d.correlation_id):
            if d.status == "queued":
                d.status = "in_progress"
                d.started_at = d.started_at or self.clock()
                await self._save(d, state, log=f"Deployment to {d.environment} started ({d.kind}, attempt {d.attempt})")
                await self._emit("status", d)
            else:
                await self._log(d, "Resuming after an interruption", level="warn")
            spec = self._spec_of(d, state)
            try:
                client, account_id = await self._client_for(d.environment)
            except FlareshipError as exc:
                await self._fail(d, state, exc, STEP_NAMES[1])
                return
            ctx = StepContext(
                deployment=d, spec=spec, state=state, client=client, clients=self.cloudflare,
                account_id=account_id, settings=self.settings, http=self._http, log=None,  # set below
                load_source=lambda: self._source(d.repository, d.sha, d.installation_id),
                today=self.clock().date(), dry_run=d.options.dry_run, health_interval=self.health_interval,
                other_owners=self._other_owners(d, account_id),
            )
            current: dict[str, str | None] = {"step": None}

            async def step_log(message: str, level: str = "info") -> None:
                # Buffered: written with the step's completion (one transaction per step).
                self._pending_logs.setdefault(d.id, []).append((self.clock(), level, redact(message), current["step"]))

            ctx.log = step_log
            if state.get("rolling_back"):
                await self._rollback_on_failure(d, state, ctx, resumed=True)
                return
            pipeline = ROLLBACK_PIPELINE if d.kind == "rollback" else PIPELINE
            finished: Step | None = None  # completed, persisted with the next transition
            for step in d.steps:
                if step.status in ("completed", "skipped"):
                    continue
                if lost.is_set():
                    raise _LeaseLost()
                if self._stopping:
                    if finished is not None:
                        await self._save(d, state)
                    return
                current["step"] = step.name
                step.status = "running"
                step.started_at = self.clock()
                step.ended_at = None
                step.attempt += 1
                step.error = step.error_code = None
                # One transaction persists the previous step's completion (and its logs) and this
                # step's start, and reads a pending cancel request.
                _updated, cancel = await self._save(d, state)
                if finished is not None:
                    await self._emit("step", d, step=finished.model_copy())
                    finished = None
                if cancel:
                    step.status, step.started_at, step.attempt = "pending", None, step.attempt - 1
                    await self._cancelled(d, state)
                    return
                await self._emit("step", d, step=step.model_copy())
                try:
                    outcome = await pipeline[step.name](ctx)
                except FlareshipError as exc:
                    await self._step_failed(d, state, ctx, step, exc)
                    return
                except CloudflareError as exc:
                    await self._step_failed(d, state, ctx, step, cloudflare_failure(exc, step.name))
                    return
                except (asyncio.CancelledError, _LeaseLost):
                    raise
                except Exception as exc:  # a bug or an unexpected answer: fail cleanly, with the correlation id
                    log.exception("step %s of %s raised", step.name, d.id)
                    await self._step_failed(d, state, ctx, step,
                                            FlareshipError("SYS_001", f"{type(exc).__name__}: {exc}", step=step.name))
                    return
                step.status = "completed" if outcome != "skipped" else "skipped"
                step.ended_at = self.clock()
                finished = step
            await self._complete(d, state, ctx)
            if finished is not None:
                await self._emit("step", d, step=finished.model_copy())

    def _other_owners(self, d: Deployment, account_id: str):
        async def owners() -> set[str]:
            return {t for t in await self.store.script_owners(d.script_name, account_id) if t != d.target}
        return owners

    async def _complete(self, d: Deployment, state: dict, ctx: StepContext) -> None:
        now = self.clock()
        if state.get("url"):
            d.urls[d.environment] = state["url"]
        if not d.options.dry_run:
            release = Release(
                id=state.get("release_id") or new_release_id(), target=d.target, environment=d.environment,
                script_name=d.script_name, version_id=state.get("version_id"), image=state.get("image"),
                image_digest=state.get("image_digest"), container_app_id=state.get("container_app_id"),
                migration_tag=state.get("migration_tag"), sha=d.sha, deployment_id=d.id, created_at=now,
            )
            state["release_id"] = release.id
            d.release = release
        d.status = "completed"
        d.ended_at = now
        await self._save(d, state, release=d.release if not d.options.dry_run else None,
                         log="Deployment completed" + (f": {d.urls[d.environment]}" if d.urls.get(d.environment) else ""))
        await self._emit("status", d)

    async def _cancelled(self, d: Deployment, state: dict) -> None:
        d.status = "cancelled"
        d.ended_at = self.clock()
        for s in d.steps:
            if s.status == "pending":
                s.status = "skipped"
        await self._save(d, state, log="Cancelled between steps", level="warn")
        await self._emit("status", d)

    async def _step_failed(self, d: Deployment, state: dict, ctx: StepContext, step: Step,
                           exc: FlareshipError) -> None:
        step.status = "failed"
        step.ended_at = self.clock()
        step.error = exc.message
        step.error_code = exc.code
        await self._fail(d, state, exc, step.name, ctx=ctx, failed_step=step)

    async def _fail(self, d: Deployment, state: dict, exc: FlareshipError, step_name: str | None,
                    ctx: StepContext | None = None, failed_step: Step | None = None) -> None:
        d.error = DeploymentError(code=exc.code, message=exc.message, step=exc.step or step_name,
                                  correlation_id=d.correlation_id)
        await self._save(d, state, log=f"{step_name or 'Deployment'} failed: {exc.code} {exc.message}",
                         level="error", step=step_name)
        if failed_step is not None:
            await self._emit("step", d, step=failed_step.model_copy())
        touched = any(s.status in ("completed", "failed") for s in d.steps[3:]) or bool(state.get("image"))
        if (ctx is not None and d.kind == "deploy" and d.options.rollback_on_failure and not d.options.dry_run
                and touched and d.previous_release is not None):
            state["rolling_back"] = True
            await self._save(d, state)
            await self._rollback_on_failure(d, state, ctx)
            return
        if ctx is not None and d.options.rollback_on_failure and d.previous_release is None and d.kind == "deploy":
            await self._log(d, "No previous release to roll back to", level="warn", step=step_name)
        d.status = "failed"
        d.ended_at = self.clock()
        await self._save(d, state)
        await self._emit("status", d)

    async def _rollback_on_failure(self, d: Deployment, state: dict, ctx: StepContext, resumed: bool = False) -> None:
        target = d.previous_release
        await self._log(d, f"Rolling back to release {target.id} (version {target.version_id})"
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
            await self._log(d, d.error.message, level="error")
            state.pop("rolling_back", None)
            d.status = "failed"
        else:
            state.pop("rolling_back", None)
            d.status = "rolled_back"
            await self._log(d, f"Rolled back to release {target.id}")
        d.ended_at = self.clock()
        await self._save(d, state)
        await self._emit("status", d)
