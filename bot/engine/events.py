"""Deployment events: subscribers and the bounded queue each one reads from.

A slow subscriber (an SSE client, a reporter) never holds up a deployment: `emit` only offers
the event to each subscriber's queue, which drops its oldest event when full.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.engine.model import Deployment, DeploymentEvent, EventKind, LogLine, Step

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000

Subscriber = Callable[[DeploymentEvent], Awaitable[None]]


class _Subscription:
    def __init__(self, callback: Subscriber) -> None:
        self.callback = callback
        self.queue: asyncio.Queue[DeploymentEvent] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self.task: asyncio.Task[None] | None = None
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


class EventHub:
    """Fans deployment events out to subscribers, each through its own task and queue."""

    def __init__(self) -> None:
        self._subscriptions: list[_Subscription] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Deliver every later event to `callback`; returns the function that unsubscribes."""
        sub = _Subscription(callback)
        try:
            sub.task = asyncio.get_running_loop().create_task(sub.run())
        except RuntimeError:  # subscribed before the loop runs: started with the first event
            sub.task = None
        self._subscriptions.append(sub)

        def unsubscribe() -> None:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
            if sub.task:
                sub.task.cancel()

        return unsubscribe

    async def emit(self, kind: EventKind, d: Deployment, step: Step | None = None,
                   line: LogLine | None = None) -> None:
        """Offer a snapshot of `d` (so later changes do not leak into queued events)."""
        if not self._subscriptions:
            return
        snapshot = d.model_copy(update={"steps": [s.model_copy() for s in d.steps], "urls": dict(d.urls)})
        event = DeploymentEvent(kind=kind, deployment=snapshot, step=step, log=line)
        for sub in list(self._subscriptions):
            if sub.task is None:
                sub.task = asyncio.get_running_loop().create_task(sub.run())
            sub.offer(event)

    async def close(self) -> None:
        """Cancel every subscriber's task and forget the subscribers."""
        tasks = [s.task for s in self._subscriptions if s.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._subscriptions.clear()
