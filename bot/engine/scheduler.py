"""The scheduler: one active deployment per (target, environment), held as a lease in the store.

Each pass walks the environments with queued or in-progress work and, for each head of queue
whose lease is free or expired, takes the lease and runs the deployment; a heartbeat renews the
lease while it runs. A queued deployment that is not `ready` (waiting for its CI build) is
passed over and holds nothing, so the next one in its environment's queue may run. A process
that dies leaves a lease that expires, and any engine (this process after a restart, or another
replica) takes it over and resumes the deployment; a dead process's expired lease on a deployment
that had already ended is deleted (at most once per lease period).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.engine.model import FINAL_STATUSES
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)

#: Runs one deployment; returns when it is final, stopped between steps, or raises LeaseLost.
RunDeployment = Callable[[str, asyncio.Event], Awaitable[None]]
#: Whether a queued deployment (id, when it was queued) may take its lease now (False: parked,
#: e.g. waiting for its build). A retry queues it again, with a new time.
Ready = Callable[[str, datetime | None], Awaitable[bool]]


async def _always(_deployment_id: str, _queued_at: datetime | None) -> bool:
    return True


class LeaseLost(Exception):
    """Another engine holds the lease now: stop this run without touching the deployment."""


class Scheduler:
    """Starts deployments as their environments' leases allow, at most `max_concurrent` at once."""

    def __init__(self, store: DeploymentStore, run: RunDeployment, *, holder: str, clock: Callable[[], datetime],
                 lease: timedelta, heartbeat_seconds: float, poll_seconds: float, max_concurrent: int,
                 ready: Ready = _always) -> None:
        self.store = store
        self.run = run
        #: Asked, in queue order, for each queued deployment before one takes a free lease.
        self.ready = ready
        self.holder = holder
        self.clock = clock
        self.lease = lease
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        #: Deployments run at once by this process (others stay queued, holding no lease).
        self.max_concurrent = max_concurrent
        self.stopping = False
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._next_lease_sweep: datetime | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def wake(self) -> None:
        """Schedule a pass now (something was queued, unlocked or finished)."""
        self._wake.set()

    def start(self) -> None:
        self.stopping = False
        self._loop = asyncio.create_task(self._schedule_loop(), name="flareship-engine-scheduler")

    async def stop(self) -> None:
        """Stop scheduling; running deployments are cancelled and release their leases."""
        self.stopping = True
        self._wake.set()
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _schedule_loop(self) -> None:
        while not self.stopping:
            self._wake.clear()
            try:
                await self._schedule_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engine scheduler pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    async def _drop_ended_leases(self) -> None:
        now = self.clock()
        if self._next_lease_sweep is not None and now < self._next_lease_sweep:
            return
        self._next_lease_sweep = now + self.lease
        dropped = await self.store.drop_ended_leases(now, FINAL_STATUSES)
        if dropped:
            log.info("dropped %d expired lease(s) of deployments that had ended (their holder died)", dropped)

    async def _schedule_once(self) -> None:
        await self._drop_ended_leases()
        for key in await self.store.active_keys():
            if len(self._running) >= self.max_concurrent or self.stopping:
                return
            if key in self._running:
                continue
            queue = await self.store.queue(*key)
            if not queue:
                continue
            head = queue[0] if queue[0].status == "in_progress" else None
            if head is None:
                if await self.store.get_lock(*key) is not None:
                    continue  # a locked environment starts nothing new; it waits for /unlock
                head = await self._first_ready(queue)
                if head is None:
                    continue
            if not await self.store.acquire_lease(key[0], key[1], self.holder, head.id, self.clock(), self.lease):
                continue
            task = asyncio.create_task(self._run_with_lease(key, head.id), name=f"deploy-{head.id}")
            self._running[key] = task

    async def _first_ready(self, queue: list[Any]) -> Any | None:
        """The oldest queued deployment that is not parked: a parked one lets later ones pass."""
        for item in queue:
            try:
                if await self.ready(item.id, item.queued_at):
                    return item
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken check must not hold the environment: the run reports
                log.exception("readiness check of %s failed", item.id)
                return item
        return None

    async def _run_with_lease(self, key: tuple[str, str], deployment_id: str) -> None:
        lost = asyncio.Event()

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                if not await self.store.renew_lease(key[0], key[1], self.holder, self.clock(), self.lease):
                    lost.set()
                    return

        beat = asyncio.create_task(heartbeat())
        try:
            await self.run(deployment_id, lost)
        except asyncio.CancelledError:
            pass
        except LeaseLost:
            log.warning("lease on %s/%s lost while running %s; another engine resumes it", *key, deployment_id)
        except Exception:
            log.exception("deployment %s crashed in the runner", deployment_id)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._running.pop(key, None)
            if not lost.is_set():
                try:
                    await asyncio.shield(self.store.release_lease(key[0], key[1], self.holder))
                except Exception:
                    log.exception("could not release lease %s/%s", *key)
            self._wake.set()
