"""The REST API's own state on the app: its SSE tuning and the last deployment counts it saw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from handlers.api.sse import SSESettings


@dataclass
class ApiState:
    sse: SSESettings = field(default_factory=SSESettings)
    #: What `/health/deployment` and `/metrics` answer when the engine is slow to count.
    last_counts: dict[str, Any] = field(default_factory=lambda: {"active": 0, "queued": 0})


API_STATE = web.AppKey("api_state", ApiState)
