"""Changing a deployment from outside its run: queue it, retry, cancel, or queue a rollback.

Each change is a compare-and-set on the deployment's status in the store, so two front doors
(or two replicas) acting at once cannot both win; the scheduler is woken to act on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.engine.events import EventHub
from bot.engine.journal import Journal
from bot.engine.model import STEP_NAMES, Deployment, DeployOptions, new_deployment_id
from bot.engine.preview_spec import is_preview_environment
from bot.engine.records import Records, deployment_of, deployment_row, release_of
from bot.engine.rollback import migration_guard
from bot.engine.state import StepState
from bot.errors import FlareshipError
from bot.logs import new_correlation_id
from bot.store.deployments import DeploymentStore


class Control:
    """deploy / retry / cancel / rollback, as the engine's front doors ask for them."""

    def __init__(self, store: DeploymentStore, records: Records, journal: Journal, events: EventHub,
                 clock: Callable[[], datetime], wake: Callable[[], None]) -> None:
        self.store = store
        self.records = records
        self.journal = journal
        self.events = events
        self.clock = clock
        self.wake = wake

    async def deploy(self, deployment_id: str, options: DeployOptions) -> Deployment:
        """Enqueue a prepared deployment (FIFO per target + environment) and return at once."""
        d = await self.records.get(deployment_id)
        if d.status in ("queued", "in_progress"):
            return d
        if d.status != "initiated":
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status}; only a prepared deployment "
                                 "can be deployed", details={"status": d.status})
        lock = await self.store.get_lock(d.target, d.environment)
        if lock is not None:
            raise FlareshipError("DEPLOY_009", f"{d.environment} is locked by {lock.actor} since "
                                 f"{lock.created_at.isoformat()}: {lock.reason or 'no reason given'}",
                                 details={"lockedBy": lock.actor, "reason": lock.reason})
        d.options = options
        d.max_attempts = max(1, options.max_retries)
        d.status = "queued"
        now = self.clock()
        ok, _cancel = await self.journal.save(d, None, log_line="Queued" + (" (dry run)" if options.dry_run else ""),
                                              only_if_status=("initiated",), queued_at=now)
        if not ok:
            return await self.records.get(d.id)
        await self.events.emit("status", d)
        self.wake()
        queue = await self.store.queue(d.target, d.environment)
        d.queue_position = next((i for i, item in enumerate(queue) if item.id == d.id), None)
        return d

    async def retry(self, deployment_id: str, *, step_name: str | None = None,
                    max_retries: int | None = None) -> Deployment:
        """Resume a failed deployment at its failed step (or `step_name`); DEPLOY_010 otherwise."""
        row = await self.store.get(deployment_id)
        if row is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        d = deployment_of(row)
        if d.status != "failed":  # a rolled-back deployment is final too: deploy again instead
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status}; only a failed deployment "
                                 "can be retried", details={"status": d.status})
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
        state = StepState.from_json(row.state)
        state.rolling_back = False
        for s in d.steps[index:]:
            s.status, s.error, s.error_code, s.started_at, s.ended_at = "pending", None, None, None, None
        d.attempt += 1
        d.status = "queued"
        d.error = None
        d.ended_at = None
        now = self.clock()
        ok = await self.store.update_if(d.id, ("failed",), status="queued", queued_at=now,
                                        cancel_requested=False, document=d.model_dump(mode="json"),
                                        state=state.to_json(), updated_at=now)
        if not ok:
            raise FlareshipError("DEPLOY_010", f"deployment {d.id} changed state; try again")
        await self.events.emit("status", d)
        await self.journal.log(d, f"Retry {d.attempt}/{d.max_attempts} from step '{STEP_NAMES[index]}'")
        self.wake()
        return await self.records.get(d.id)

    async def cancel(self, deployment_id: str) -> Deployment:
        """Cancel a prepared/queued deployment now, a running one between steps."""
        d = await self.records.get(deployment_id)
        now = self.clock()
        if d.status in ("initiated", "queued"):
            d.status = "cancelled"
            d.ended_at = now
            for s in d.steps:
                if s.status == "pending":
                    s.status = "skipped"
            if await self.store.update_if(d.id, ("initiated", "queued"), status="cancelled",
                                          document=d.model_dump(mode="json"), updated_at=now):
                await self.events.emit("status", d)
                await self.journal.log(d, "Cancelled before it started")
                return await self.records.get(d.id)
            d = await self.records.get(deployment_id)
        if d.status == "in_progress":
            await self.store.update(d.id, cancel_requested=True, updated_at=now)
            await self.journal.log(d, "Cancellation requested; stopping after the current step")
            return await self.records.get(d.id)
        raise FlareshipError("DEPLOY_010", f"deployment {d.id} is {d.status} and cannot be cancelled",
                             details={"status": d.status})

    async def rollback(self, deployment_id: str, *, reason: str | None = None, target_version: str | None = None,
                       actor: str | None = None, trigger: str = "api") -> Deployment:
        """Queue a rollback deployment returning the environment to the release before `deployment_id`."""
        source = await self.records.get(deployment_id)
        if is_preview_environment(source.environment):  # a preview follows its PR's head: push or /deploy preview
            raise FlareshipError("DEPLOY_010", f"{source.environment} is a pull request's preview; it is not rolled "
                                 "back (push a commit or comment /deploy preview instead)")
        if target_version:
            row = await self.store.find_release(source.target, source.environment, target_version)
            if row is None:
                raise FlareshipError("SYS_005", f"no release {target_version!r} for {source.target} / "
                                     f"{source.environment}")
            target = release_of(row)
        else:
            target = source.previous_release if source.kind == "deploy" else None
            if source.kind == "rollback":
                target = source.previous_release
        if target is None:
            raise FlareshipError("DEPLOY_007", f"nothing to roll back to: {source.environment} had no release before "
                                 f"{source.id}", variant="refused")
        live = await self.records.live_release(source.target, source.environment)
        if live is not None:
            reason_refused = migration_guard(target, live.migration_tag)
            if reason_refused:
                raise FlareshipError("DEPLOY_007", f"Rollback refused: {reason_refused}", variant="refused",
                                     details={"targetRelease": target.id, "liveRelease": live.id})
        source_row = await self.store.get(source.id)
        account_id = StepState.from_json(source_row.state if source_row is not None else None).account_id
        now = self.clock()
        rb = Deployment(
            id=new_deployment_id(), kind="rollback", environment=source.environment, app_name=source.app_name,
            script_name=target.script_name, target=source.target, repository=source.repository, sha=target.sha,
            ref=source.ref, pull_request=source.pull_request, installation_id=source.installation_id,
            trigger=trigger, actor=actor, status="queued", previous_release=live, rollback_of=source.id,
            rollback_target=target, reason=reason, correlation_id=new_correlation_id(),
            config=dict(source.config), created_at=now,
            options=DeployOptions(rollback_on_failure=False, max_retries=1), max_attempts=1,
        )
        row_values = deployment_row(rb, StepState(account_id=account_id), now, account_id=account_id)
        row_values["queued_at"] = now
        await self.store.insert(row_values)
        await self.events.emit("status", rb)
        await self.journal.log(rb, f"Rollback of {source.id} to release {target.id} queued"
                               + (f": {reason}" if reason else ""))
        self.wake()
        return await self.records.get(rb.id)
