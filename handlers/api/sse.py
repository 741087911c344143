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
from dataclasses import dataclass

from aiohttp import web

from handlers.api.present import log_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSESettings:
    poll_interval: float = 1.0
    keepalive_interval: float = 15.0
    #: A client that does not take a single event for this long is dropped.
    write_timeout: float = 30.0
    retry_ms: int = 2000


def last_event_id(request: web.Request) -> int:
    """The id after which to resume: Last-Event-ID header, or ?lastEventId= for plain clients."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId") or "0"
    try:
        value = int(raw.strip())
    except ValueError:
        return 0
    return max(0, value)


def format_event(data: dict, *, event_id: int | None = None, event: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def stream_logs(request: web.Request, engine, deployment_id: str, settings: SSESettings) -> web.StreamResponse:
    after = last_event_id(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    wake = asyncio.Event()

    async def on_event(event) -> None:
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
                final = {"deploymentId": deployment.id, "status": deployment.status}
                if deployment.error is not None:
                    final["error"] = {"code": deployment.error.code, "message": deployment.error.message}
                await write(format_event(final, event="end"))
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
