"""Reading deployments, logs, releases and locks back from the store as the engine's models."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.engine.model import Deployment, LogLine, Release
from bot.engine.state import StepState
from bot.errors import FlareshipError
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)


def deployment_of(row: Any) -> Deployment:
    """The deployment document of a `deployments` row."""
    return Deployment.model_validate(row.document)


def release_of(row: Any) -> Release | None:
    """A `releases` row as a Release (None for no row)."""
    if row is None:
        return None
    return Release(**{k: getattr(row, k) for k in Release.model_fields})


def lock_dict(row: Any) -> dict[str, Any]:
    return {"target": row.target, "environment": row.environment, "actor": row.actor, "reason": row.reason,
            "created_at": row.created_at.isoformat()}


def deployment_row(d: Deployment, state: StepState, now: datetime, *,
                   account_id: str | None = None) -> dict[str, Any]:
    """The values of a new `deployments` row."""
    row: dict[str, Any] = {
        "id": d.id, "kind": d.kind, "target": d.target, "environment": d.environment,
        "script_name": d.script_name, "repository": d.repository, "sha": d.sha,
        "pull_request": d.pull_request, "status": d.status, "queued_at": None,
        "cancel_requested": False, "document": d.model_dump(mode="json"), "state": state.to_json(),
        "created_at": d.created_at, "updated_at": now,
    }
    if account_id is not None:
        row["account_id"] = account_id
    return row


class Records:
    """The read side of the engine, plus environment locks."""

    def __init__(self, store: DeploymentStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    async def queue_position(self, deployment_id: str) -> int | None:
        """0 = running (or next to run), 1 = first waiting behind it, ...; None when not queued."""
        row = await self.store.get(deployment_id)
        if row is None or row.status not in ("queued", "in_progress"):
            return None
        for i, item in enumerate(await self.store.queue(row.target, row.environment)):
            if item.id == deployment_id:
                return i
        return None

    async def get(self, deployment_id: str) -> Deployment:
        row = await self.store.get(deployment_id)
        if row is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        d = deployment_of(row)
        if d.status in ("queued", "in_progress"):
            d.queue_position = await self.queue_position(d.id)
        return d

    async def list(self, *, environment: str | None = None, repository: str | None = None,
                   status: str | None = None, limit: int = 50, before: str | None = None) -> builtins.list[Deployment]:
        rows = await self.store.list(environment=environment, repository=repository, status=status,
                                     limit=max(1, min(limit, 500)), before=before)
        return [deployment_of(r) for r in rows]

    async def logs(self, deployment_id: str, *, after: int = 0) -> builtins.list[LogLine]:
        rows = await self.store.logs(deployment_id, after)
        if not rows and await self.store.get(deployment_id) is None:
            raise FlareshipError("SYS_005", f"deployment {deployment_id} not found")
        return [LogLine(id=r.id, timestamp=r.timestamp, level=r.level, message=r.message, step=r.step) for r in rows]

    async def live_release(self, target: str, environment: str) -> Release | None:
        return release_of(await self.store.latest_release(target, environment))

    async def counts(self) -> dict[str, int]:
        return await self.store.counts()

    # -- locks -------------------------------------------------------------------------

    async def lock(self, target: str, environment: str, *, actor: str, reason: str | None = None) -> dict[str, Any]:
        row = await self.store.set_lock(target, environment, actor, reason, self.clock())
        return lock_dict(row)

    async def unlock(self, target: str, environment: str, *, actor: str) -> bool:
        removed = await self.store.delete_lock(target, environment)
        if removed:
            log.info("environment %s/%s unlocked by %s", target, environment, actor)
        return removed

    async def get_lock(self, target: str, environment: str) -> dict[str, Any] | None:
        row = await self.store.get_lock(target, environment)
        return lock_dict(row) if row else None
