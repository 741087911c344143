"""Turn engine records into the REST API's response shapes (pure: no I/O, the clock is passed in)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.engine.model import STEP_NAMES, Deployment, LogLine, Release, Step


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed_status(status: str) -> str:
    """The REST API's deployment statuses: a deployment waiting in the queue has been initiated
    (its `queuePosition` says where it waits); `cancelled` is the one added to the original API's set."""
    return "initiated" if status == "queued" else status


def seed_step(step: Step) -> dict[str, Any]:
    """A step in the REST API's statuses: a step with nothing to do (no container) is completed."""
    skipped = step.status == "skipped"
    return {"status": "completed" if skipped else step.status, **({"skipped": True} if skipped else {})}


def steps_json(deployment: Deployment) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            **seed_step(s),
            "startTime": iso(s.started_at),
            "endTime": iso(s.ended_at),
            "error": s.error,
        }
        for s in deployment.steps
    ]


def rollback_info(deployment: Deployment, live: Release | None = None) -> dict[str, Any]:
    """What a rollback would return to: the release before this deployment (or what is live now)."""
    previous = deployment.previous_release
    if previous is None and not deployment.is_final:
        previous = live if live is None or live.deployment_id != deployment.id else None
    return {"available": previous is not None, "previousVersion": previous.id if previous else None}


def deploy_json(deployment: Deployment, live: Release | None = None) -> dict[str, Any]:
    return {
        "deploymentId": deployment.id,
        "status": seed_status(deployment.status),
        "steps": steps_json(deployment),
        "urls": dict(deployment.urls),
        "rollbackInfo": rollback_info(deployment, live),
        "queuePosition": deployment.queue_position,
    }


def prepare_json(deployment: Deployment) -> dict[str, Any]:
    checks = {k: deployment.checks.get(k, "pass") for k in ("resources", "quotas", "dependencies")}
    cost = deployment.estimated_cost or {}
    return {
        "prepared": deployment.status in ("initiated", "queued", "in_progress", "completed"),
        "deploymentId": deployment.id,
        "checks": checks,
        "estimatedCost": {"monthly": float(cost.get("monthly", 0.0)), "currency": cost.get("currency", "USD")},
    }


def step_medians(history: Iterable[Deployment]) -> dict[str, float]:
    """Median duration (seconds) of each step over earlier deployments where it completed."""
    samples: dict[str, list[float]] = {}
    for deployment in history:
        for step in deployment.steps:
            if step.status == "completed" and step.duration is not None:
                samples.setdefault(step.name, []).append(step.duration)
    return {name: statistics.median(values) for name, values in samples.items()}


def estimate_remaining(deployment: Deployment, medians: dict[str, float], now: datetime) -> float | None:
    """Seconds until the deployment should finish, from the medians; None without history."""
    if not medians:
        return None
    remaining = 0.0
    for step in deployment.steps:
        median = medians.get(step.name)
        if step.status == "pending":
            remaining += median or 0.0
        elif step.status == "running" and median is not None:
            started = step.started_at or now
            if started.tzinfo is None:
                started = started.replace(tzinfo=UTC)
            remaining += max(0.0, median - (now - started).total_seconds())
    return remaining


def status_json(
    deployment: Deployment,
    *,
    logs: list[LogLine],
    medians: dict[str, float],
    now: datetime,
    recent_logs: int = 10,
) -> dict[str, Any]:
    total = len(STEP_NAMES)
    done = [s for s in deployment.steps if s.status in ("completed", "skipped")]
    current = None if deployment.status == "completed" else deployment.current_step
    if deployment.status in ("cancelled", "rolled_back") and current is not None and current.status == "pending":
        current = None
    current_json = None
    if current is not None:
        lines = [line.message for line in logs if line.step == current.name][-recent_logs:]
        current_json = {"name": current.name, "status": current.status, "startTime": iso(current.started_at), "logs": lines}
    if deployment.is_final:
        estimated = iso(deployment.ended_at)
    else:
        remaining = estimate_remaining(deployment, medians, now)
        estimated = iso(now + timedelta(seconds=remaining)) if remaining is not None else None
    error = deployment.error.model_dump(include={"code", "message", "step"}) if deployment.error else None
    return {
        "deploymentId": deployment.id,
        "status": seed_status(deployment.status),
        "progress": {"current": len(done), "total": total, "percentage": round(len(done) * 100.0 / total, 1)},
        "currentStep": current_json,
        "completedSteps": [{"name": s.name, **seed_step(s), "duration": s.duration} for s in done],
        "metadata": {
            "environment": deployment.environment,
            "startTime": iso(deployment.started_at or deployment.created_at),
            "estimatedCompletion": estimated,
        },
        "error": error,
        "queuePosition": deployment.queue_position,
    }


def summary_json(deployment: Deployment) -> dict[str, Any]:
    return {
        "deploymentId": deployment.id,
        "kind": deployment.kind,
        "environment": deployment.environment,
        "status": seed_status(deployment.status),
        "appName": deployment.app_name,
        "repository": deployment.repository,
        "ref": deployment.ref,
        "sha": deployment.sha,
        "trigger": deployment.trigger,
        "actor": deployment.actor,
        "createdAt": iso(deployment.created_at),
        "endedAt": iso(deployment.ended_at),
        "urls": dict(deployment.urls),
    }


def log_json(line: LogLine) -> dict[str, Any]:
    """One SSE event's data: timestamp, level and message (plus the step)."""
    return {"timestamp": iso(line.timestamp), "level": line.level, "message": line.message, "step": line.step}


#: The final event's level and wording by final status (levels: info, warn, error).
_END_LEVELS: dict[str, str] = {"completed": "info", "cancelled": "warn", "rolled_back": "warn", "failed": "error"}
_END_WORDS: dict[str, str] = {"completed": "completed", "cancelled": "was cancelled",
                              "rolled_back": "was rolled back", "failed": "failed"}


def end_json(deployment: Deployment, now: datetime) -> dict[str, Any]:
    """The `end` event's data: timestamp, level and message like every event, then the final status
    (and the error, when there is one). `now` stands in for a missing end time."""
    words = _END_WORDS.get(deployment.status, deployment.status)
    message = f"Deployment {deployment.id} {words}"
    if deployment.error is not None:
        message += f": {deployment.error.code} {deployment.error.message}"
    data: dict[str, Any] = {
        "timestamp": iso(deployment.ended_at or now),
        "level": _END_LEVELS.get(deployment.status, "info"),
        "message": message,
        "deploymentId": deployment.id,
        "status": deployment.status,
    }
    if deployment.error is not None:
        data["error"] = {"code": deployment.error.code, "message": deployment.error.message}
    return data
