"""The REST API's own running parts, kept in one mutable object on the app (set before start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.health import HealthMonitor
from bot.metrics import Metrics
from bot.store.api_tokens import ApiTokenStore
from handlers.api.sse import SSESettings


@dataclass
class ApiState:
    metrics: Metrics = field(default_factory=Metrics)
    sse: SSESettings = field(default_factory=SSESettings)
    #: Health probing: seconds between rounds, per-probe timeout, and the "slow" threshold.
    health_interval: float = 30.0
    health_timeout: float = 5.0
    health_degraded_after_ms: int = 1000
    health: HealthMonitor | None = None
    tokens: ApiTokenStore | None = None
    last_counts: dict[str, Any] = field(default_factory=lambda: {"active": 0, "queued": 0})


API_STATE = web.AppKey("api_state", ApiState)
