"""MonitoringController: dependency health, deployment and error metrics, resource usage, Prometheus,
and the bare readiness probe `GET /readyz`."""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from pydantic import Field

from bot.dispatcher import DISPATCHER
from bot.engine.model import STEP_NAMES, Deployment
from bot.health import readiness
from bot.services import SERVICES
from handlers.api import models
from handlers.api.bodies import query_model
from handlers.api.deployments import engine_of
from handlers.api.present import iso
from handlers.api.state import API_STATE
from handlers.http import json_success

#: The engine's counts come from the store; a slow store must not make health slow.
COUNTS_TIMEOUT = 0.5


# -- pure statistics over recent deployments --------------------------------------------------------


def _duration(d: Deployment) -> float | None:
    if d.started_at and d.ended_at:
        return (d.ended_at - d.started_at).total_seconds()
    return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def deployment_metrics(deployments: Iterable[Deployment], window: int) -> dict[str, Any]:
    items = list(deployments)
    by_status = Counter(d.status for d in items)
    by_env: dict[str, dict[str, int]] = {}
    for d in items:
        by_env.setdefault(d.environment, {}).setdefault(d.status, 0)
        by_env[d.environment][d.status] += 1
    finished = [d for d in items if d.status in ("completed", "failed", "rolled_back")]
    success = sum(1 for d in finished if d.status == "completed")
    durations = [x for d in items if d.status == "completed" and (x := _duration(d)) is not None]
    steps = []
    for name in STEP_NAMES:
        values = [s.duration for d in items for s in d.steps if s.name == name and s.status == "completed" and s.duration is not None]
        steps.append({
            "name": name,
            "count": len(values),
            "medianDuration": round(statistics.median(values), 3) if values else None,
            "p95Duration": _percentile(values, 0.95),
        })
    return {
        "window": window,
        "total": len(items),
        "byStatus": dict(by_status),
        "byEnvironment": by_env,
        "successRate": round(success / len(finished), 4) if finished else None,
        "medianDuration": round(statistics.median(durations), 3) if durations else None,
        "steps": steps,
    }


def error_metrics(deployments: Iterable[Deployment], window: int, recent: int = 10) -> dict[str, Any]:
    items = list(deployments)
    failed = [d for d in items if d.error is not None or d.status == "failed"]
    finished = [d for d in items if d.is_final]
    by_code = Counter(d.error.code for d in failed if d.error)
    by_step = Counter(d.error.step for d in failed if d.error and d.error.step)
    return {
        "window": window,
        "failed": len(failed),
        "errorRate": round(len(failed) / len(finished), 4) if finished else None,
        "byCode": dict(by_code),
        "byStep": dict(by_step),
        "recent": [
            {
                "deploymentId": d.id,
                "environment": d.environment,
                "code": d.error.code if d.error else None,
                "step": d.error.step if d.error else None,
                "message": d.error.message if d.error else None,
                "at": iso(d.ended_at or d.created_at),
            }
            for d in failed[:recent]
        ],
    }


def process_usage() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = None
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        fds: int | None = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    return {
        "rssBytes": rss,
        "maxRssBytes": usage.ru_maxrss * 1024,
        "cpuUserSeconds": round(usage.ru_utime, 3),
        "cpuSystemSeconds": round(usage.ru_stime, 3),
        "openFiles": fds,
        "threads": threading.active_count(),
    }


# -- handlers ----------------------------------------------------------------------------------------


async def _counts(app: web.Application) -> dict[str, Any]:
    """Active/queued deployments from the engine, or the last known counts if it is slow."""
    state, services = app[API_STATE], app[SERVICES]
    try:
        async with asyncio.timeout(COUNTS_TIMEOUT):
            counts = await services.engine.counts()
    except Exception:
        return state.last_counts
    state.last_counts = counts
    services.metrics.deployment_counts(counts.get("active", 0), counts.get("queued", 0))
    return counts


async def get_health_status(request: web.Request) -> web.Response:
    """GET /health/deployment: the last probe results (never waits on a dependency)."""
    snapshot = request.app[SERVICES].health.snapshot()
    counts = await _counts(request.app)
    snapshot["activeDeployments"] = counts.get("active", 0)
    snapshot["queuedDeployments"] = counts.get("queued", 0)
    # PR previews: removals still to do, and the failing ones (one indexed read)
    snapshot["previews"] = await request.app[SERVICES].preview_sweep.health()
    return json_success(snapshot)


class WindowQuery(models.Body):
    environment: str | None = Field(default=None, pattern=models.ENVIRONMENT_PATTERN)
    window: int = Field(default=100, ge=1, le=1000, description="How many recent deployments to consider")


async def _recent(request: web.Request) -> tuple[list[Deployment], int]:
    query = query_model(request, WindowQuery)
    items = await engine_of(request).list(environment=query.environment, limit=query.window)
    return items, query.window


async def get_deployment_metrics(request: web.Request) -> web.Response:
    """GET /metrics/deployments: outcomes per environment, success rate, durations per step."""
    items, window = await _recent(request)
    return json_success(deployment_metrics(items, window))


async def get_error_metrics(request: web.Request) -> web.Response:
    """GET /metrics/errors: error rate and failures by catalogue code and step."""
    items, window = await _recent(request)
    return json_success(error_metrics(items, window))


async def get_resource_usage(request: web.Request) -> web.Response:
    """GET /metrics/resources: this process's memory, CPU, files, tasks; deployments; rate-limit headroom."""
    counts = await _counts(request.app)
    rate_limits: dict[str, float | None] = {}
    for family in request.app[SERVICES].metrics.rate_limit_remaining.collect():
        for sample in family.samples:
            rate_limits[f"{sample.labels['service']}:{sample.labels['scope']}"] = sample.value
    return json_success({
        "process": process_usage(),
        "eventLoop": {"tasks": len(asyncio.all_tasks())},
        "deployments": {"active": counts.get("active", 0), "queued": counts.get("queued", 0)},
        "rateLimits": rate_limits,
    })


async def _backlog(app: web.Application) -> None:
    """The dispatcher's backlog (every replica's, from the store), when the store answers in time."""
    services = app[SERVICES]
    try:
        async with asyncio.timeout(COUNTS_TIMEOUT):
            counts = await services.deliveries.count_by_status()
    except Exception:
        return
    services.metrics.dispatcher_backlog(counts)


async def get_readiness(request: web.Request) -> web.Response:
    """GET /readyz: 200 when this process can serve (database, migrations, dispatcher), else 503
    naming what is not ready. Bare, like /healthz: probes read the status code."""
    problems = await readiness(request.app[SERVICES].database, request.app.get(DISPATCHER))
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def prometheus_metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition (bare, not enveloped)."""
    await _counts(request.app)
    await _backlog(request.app)
    metrics = request.app[SERVICES].metrics
    response = web.Response(body=metrics.render())
    response.headers["Content-Type"] = metrics.content_type
    return response
