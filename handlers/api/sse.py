"""Server-Sent Events for a deployment's log: replay, resume with Last-Event-ID, live, end.

New lines are found by reading the store after the last id sent, woken early by the in-process
engine's events and otherwise every `poll_interval` seconds, so a deployment running in another
replica (sharing PostgreSQL) streams too. Each client has its own loop: a slow reader only waits
on its own socket; the engine's subscriber callback merely sets an event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.errors import FlareshipError
from handlers.api.present import end_json, log_json

if TYPE_CHECKING:
    from bot.engine import Engine
    from bot.engine.model import DeploymentEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSESettings:
    poll_interval: float = 1.0
    keepalive_interval: float = 15.0
    #: A client that does not take a single event for this long is dropped.
    write_timeout: float = 30.0
    retry_ms: int = 2000


#: An event id as this server sends them (ASCII digits that fit a 64-bit integer).
_EVENT_ID = re.compile(r"[0-9]{1,18}")


def _event_id(raw: str, field: str) -> int:
    if not _EVENT_ID.fullmatch(raw):
        raise FlareshipError(
            "SYS_006", f"{field} must be an event id of this stream (1 to 18 ASCII digits), not {raw[:40]!r}",
            details={"field": field, "reason": "must be a non-negative integer event id"},
        )
    return int(raw)


def last_event_id(request: web.Request) -> int:
    """The id after which to resume: Last-Event-ID header, or ?lastEventId= for plain clients.

    Both are checked when both are sent (400 for either one invalid); the header wins, as an
    EventSource reconnecting to a URL with ?lastEventId= sends the newer id there."""
    header = request.headers.get("Last-Event-ID")
    query = request.query.get("lastEventId")
    after = 0
    if query is not None:
        after = _event_id(query, "lastEventId")
    if header is not None:
        after = _event_id(header, "Last-Event-ID")
    return after


def format_event(data: dict[str, Any], *, event_id: int | None = None, event: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def stream_logs(request: web.Request, engine: Engine, deployment_id: str, settings: SSESettings, *,
                      after: int = 0) -> web.StreamResponse:
    """Stream the log lines after `after` (see `last_event_id`), live ones, then the `end` event."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    wake = asyncio.Event()

    async def on_event(event: DeploymentEvent) -> None:
        if event.deployment.id == deployment_id:
            wake.set()

    unsubscribe = engine.subscribe(on_event)
    loop = asyncio.get_running_loop()

    async def write(chunk: bytes) -> None:
        async with asyncio.timeout(settings.write_timeout):
            await response.write(chunk)

    try:
        await response.prepare(request)
        await write(f"retry: {settings.retry_ms}\n\n".encode())
        last_write = loop.time()
        while True:
            wake.clear()
            lines = await engine.logs(deployment_id, after=after)
            for line in lines:
                await write(format_event(log_json(line), event_id=line.id))
                after = line.id
            if lines:
                last_write = loop.time()
            deployment = await engine.get(deployment_id)
            if deployment.is_final:
                for line in await engine.logs(deployment_id, after=after):
                    await write(format_event(log_json(line), event_id=line.id))
                    after = line.id
                await write(format_event(end_json(deployment, datetime.now(UTC)), event="end"))
                break
            try:
                await asyncio.wait_for(wake.wait(), timeout=min(settings.poll_interval, settings.keepalive_interval))
            except TimeoutError:
                pass
            if loop.time() - last_write >= settings.keepalive_interval:
                await write(b": keep-alive\n\n")
                last_write = loop.time()
        await response.write_eof()
    except (ConnectionError, TimeoutError) as exc:
        log.info("log stream of %s closed: %s", deployment_id, type(exc).__name__)
    except Exception:
        if not response.prepared:
            raise
        log.exception("log stream of %s failed", deployment_id)
    finally:
        unsubscribe()
    return response
