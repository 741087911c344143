"""The webhook dispatcher's lanes: claimed deliveries run in GitHub's order within each lane and
lanes run side by side, with installation changes as barriers for their own installation only
(the rules are `bot.store.delivery_order`'s).

A delivery about one repository never waits for another repository, and a delivery about none
(a `security_advisory`) runs in its installation's own lane instead of stopping everyone. An
`installation` or `installation_repositories` delivery waits until every earlier delivery of its
installation has finished, runs alone for that installation, and holds that installation's later
deliveries until it is done; the other installations' lanes go on meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.store.deliveries import StoredDelivery
from bot.store.delivery_order import is_barrier, lane_key


@dataclass
class _Installation:
    """One installation's deliveries in the lanes, and those held behind one of its barriers."""

    active: int = 0  # queued or running in a lane
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    held: collections.deque[StoredDelivery] = field(default_factory=collections.deque)
    gate: asyncio.Task[None] | None = None  # runs `held` (a barrier first) while it is not empty

    def __post_init__(self) -> None:
        self.idle.set()


class Lanes:
    """Runs admitted deliveries with `run`, at most `parallel` at once, in order per lane."""

    def __init__(self, run: Callable[[StoredDelivery], Awaitable[None]], *, parallel: int,
                 stopping: Callable[[], bool]) -> None:
        self._run = run
        self._stopping = stopping
        self._slots = asyncio.Semaphore(parallel)
        self._queues: dict[str, collections.deque[StoredDelivery]] = {}
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._installations: dict[int | None, _Installation] = {}

    def admit(self, delivery: StoredDelivery) -> None:
        """Queue `delivery` behind what was admitted before it (call in claim order)."""
        group = self._installations.setdefault(delivery.installation_id, _Installation())
        if group.gate is not None or is_barrier(delivery):
            group.held.append(delivery)
            if group.gate is None:
                group.gate = asyncio.get_running_loop().create_task(
                    self._run_gate(delivery.installation_id, group), name=f"webhook-barrier {delivery.installation_id}"
                )
            return
        self._enqueue(group, delivery)

    def _enqueue(self, group: _Installation, delivery: StoredDelivery) -> None:
        group.active += 1
        group.idle.clear()
        key = lane_key(delivery)
        self._queues.setdefault(key, collections.deque()).append(delivery)
        if key not in self._lanes:
            self._lanes[key] = asyncio.get_running_loop().create_task(self._run_lane(key), name=f"webhook-lane {key}")

    def _finished(self, delivery: StoredDelivery) -> None:
        group = self._installations.get(delivery.installation_id)
        if group is None:  # `cancel` forgot it
            return
        group.active -= 1
        if group.active == 0:
            group.idle.set()
            if group.gate is None:
                del self._installations[delivery.installation_id]

    async def _run_lane(self, key: str) -> None:
        """Handle one lane's queued deliveries in order until its queue is empty (or a stop)."""
        queue = self._queues[key]
        try:
            async with self._slots:
                while queue and not self._stopping():
                    delivery = queue.popleft()
                    try:
                        await self._run(delivery)
                    finally:
                        self._finished(delivery)
        finally:
            # No await between the last look at the queue and leaving: a delivery admitted
            # meanwhile either found this lane still registered (and was run) or starts a new one.
            del self._lanes[key]
            if self._stopping():  # left claimed: the dispatcher gives them back
                while queue:
                    self._finished(queue.popleft())
            if not queue:
                self._queues.pop(key, None)

    async def _run_gate(self, installation: int | None, group: _Installation) -> None:
        """Run an installation's held deliveries: each barrier once the installation is idle, and
        alone; what follows it goes to the lanes, up to the next barrier."""
        try:
            while group.held and not self._stopping():
                delivery = group.held[0]
                if not is_barrier(delivery):
                    self._enqueue(group, group.held.popleft())
                    continue
                await group.idle.wait()
                if self._stopping() or not group.held or group.held[0] is not delivery:
                    continue  # stopped, or `drop_queued` emptied it
                group.held.popleft()
                async with self._slots:
                    await self._run(delivery)
        finally:
            group.gate = None
            if group.active == 0 and self._installations.get(installation) is group:
                del self._installations[installation]

    def drop_queued(self) -> list[StoredDelivery]:
        """Forget every delivery not yet started (their claims were lost); returns them."""
        dropped: list[StoredDelivery] = []
        for queue in self._queues.values():
            while queue:
                delivery = queue.popleft()
                dropped.append(delivery)
                self._finished(delivery)
        for group in self._installations.values():
            dropped += group.held
            group.held.clear()
        return dropped

    def _tasks(self) -> list[asyncio.Task[None]]:
        gates = [g.gate for g in self._installations.values() if g.gate is not None]
        return [*self._lanes.values(), *gates]

    async def drain(self) -> None:
        """Wait until everything admitted has run (or a stop ended the lanes)."""
        while tasks := self._tasks():
            await asyncio.gather(*tasks, return_exceptions=True)

    async def cancel(self) -> None:
        """End every lane and barrier now (a handler still running is cut short)."""
        tasks = self._tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._installations.clear()
