"""The webhook dispatcher: runs stored deliveries through the handlers' router, once each, in
GitHub's order within each repository (repositories side by side).

The intake stores and acknowledges; this background task does the work afterwards, so a slow or
failing handler never delays GitHub's 2xx and never loses an event. A handler exception marks
that delivery failed (with its error) and the dispatcher moves on. Claims are streamed into
per-repository lanes, so a slow repository holds up only itself. On start it picks up what a
previous process stored and did not finish; with replicas on PostgreSQL, a claim is taken back
only once it is older than `claim_lease` and not renewed by a live replica, so none loses its work.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from aiohttp import web
from gidgethub import routing, sansio

from bot.logs import correlated
from bot.services import Services
from bot.store import deliveries

from bot.store.deliveries import StoredDelivery

log = logging.getLogger(__name__)


@dataclass
class WebhookContext:
    """What a webhook handler gets beside the event: the services and who the delivery is about."""

    services: Services
    delivery_id: str
    installation_id: int | None = None
    repository: str | None = None  # "owner/name"
    _github: Any = field(default=None, init=False, repr=False)

    async def github(self):
        """The installation-authenticated GitHub client for this delivery (created on first use)."""
        if self._github is None:
            if self.services.github is None:
                raise RuntimeError("the GitHub App is not configured (services.github is not set)")
            if self.installation_id is None:
                raise RuntimeError(f"delivery {self.delivery_id} names no installation")
            self._github = await self.services.github.client(self.installation_id)
        return self._github


class Dispatcher:
    """One background task that claims stored deliveries oldest first and dispatches them (see `run_once`)."""

    def __init__(
        self,
        services: Services,
        router: routing.Router,
        *,
        poll_interval: float = 2.0,
        batch_size: int = 50,
        parallel_repositories: int = 8,
        handler_timeout: float = 120.0,
        flush_interval: float = 0.25,
        busy_share: float = 0.2,
        max_pause: float = 0.25,
        intake_busy: Callable[[], bool] | None = None,
    ):
        self.services = services
        self.router = router
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.parallel_repositories = parallel_repositories
        self.handler_timeout = handler_timeout
        self.flush_interval = flush_interval
        #: While webhooks are arriving (`intake_busy()`), handlers get at most this share of the
        #: time: acknowledging fast comes first, the stored work waits a little (it is durable).
        self.busy_share = busy_share
        self.max_pause = max_pause  # a slow handler (waiting on GitHub) does not stall the queue
        self.intake_busy = intake_busy
        #: A claim older than this is taken back from a replica that must have died: no handler
        #: runs longer than `handler_timeout`.
        self.claim_lease = handler_timeout + 30.0
        self._next_sweep = 0.0
        self.prune_interval = 3600.0  # handled deliveries expire by days; hourly is plenty
        self._next_prune = 0.0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._claimed: dict[int, StoredDelivery] = {}  # claimed and not finished
        self._queues: dict[str, collections.deque[StoredDelivery]] = {}
        self._lanes: dict[str, asyncio.Task] = {}
        self._slots = asyncio.Semaphore(parallel_repositories)
        self._outcomes = _Outcomes()
        self._stopping = False
        self.processed = 0
        self.failed = 0

    @property
    def database(self):
        if self.services.database is None:
            raise RuntimeError("the dispatcher needs services.database")
        return self.services.database

    def wake(self) -> None:
        """Called by the intake after storing: look for work now rather than at the next poll."""
        self._wakeup.set()

    async def start(self) -> None:
        requeued = await self._take_back_claims(at_start=True)
        if requeued:
            log.info("resuming %d webhook deliveries interrupted by the previous process", requeued)
        self._stopping = False
        self._wakeup.set()  # pending rows from before the restart
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-dispatcher")

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the running handlers finish (up to `timeout`), give unfinished claims back, end the task."""
        self._stopping = True
        self._wakeup.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None

    async def _take_back_claims(self, *, at_start: bool = False) -> int:
        """Claims of a process that stopped mid-way go back to pending.

        On SQLite this process owns the file, so at start-up every claim is a dead one. On
        PostgreSQL other replicas may be working on theirs: only claims older than the lease are
        taken back, at start-up and then about every `claim_lease / 4` seconds, when this
        process first renews its own (each replica's renewal keeps its claims out of the sweep).
        """
        if self.database.dialect == "sqlite":
            return await deliveries.requeue_interrupted(self.database) if at_start else 0
        if not at_start and time.monotonic() < self._next_sweep:
            return 0
        self._next_sweep = time.monotonic() + self.claim_lease / 4
        await deliveries.renew_claims(self.database, list(self._claimed))  # ours are alive, queued or running
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=self.claim_lease)
        taken = await deliveries.requeue_interrupted(self.database, claimed_before=cutoff)
        if taken and not at_start:
            log.warning("took back %d webhook deliveries claimed over %ds ago by a replica that stopped",
                        taken, self.claim_lease)
        return taken

    async def _prune_if_due(self) -> None:
        """Drop handled deliveries past their retention (`deliveries.KEEP_DONE` / `KEEP_FAILED`)."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_interval
        try:
            pruned = await deliveries.prune(self.database)
        except Exception as exc:  # housekeeping: try again at the next interval
            log.warning("could not prune old webhook deliveries: %s", exc)
            return
        if pruned:
            log.info("pruned %d webhook deliveries past their retention", pruned)

    async def _run(self) -> None:
        """Claim while there is room, hand each delivery to its repository's lane, repeat.

        Claims are streamed: a slow lane holds up only its own repository, never the next
        claim. At most `batch_size` deliveries are claimed and unfinished at a time, and a new
        claim waits until half of that room is free, so that claims stay few and batched.
        """
        try:
            while not self._stopping:
                claimed: list[StoredDelivery] = []
                try:
                    await self._take_back_claims()
                    await self._prune_if_due()
                    room = self.batch_size - len(self._claimed)
                    if room >= max(1, self.batch_size // 2):
                        claimed = await deliveries.claim_pending(self.database, room)
                        await self._admit(claimed)
                    if not self._claimed or time.monotonic() - self._outcomes.flushed_at >= self.flush_interval:
                        await self._flush()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook dispatcher could not read the store; retrying")
                if not claimed and not self._stopping:
                    wait = self.flush_interval if self._claimed else self.poll_interval
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                    self._wakeup.clear()
        finally:
            try:
                await self._drain()  # handlers already running finish; the lanes take no more
            finally:
                await self._wind_down()

    async def run_once(self) -> int:
        """Claim one batch, handle all of it, record the outcomes; returns how many were handled.

        The background task (`start`) does the same continuously; this is the unit tests and
        one-off runs use.
        """
        claimed = await deliveries.claim_pending(self.database, self.batch_size)
        try:
            await self._admit(claimed)
            await self._drain()
            return sum(1 for d in claimed if d.id not in self._claimed)
        finally:
            if self._stopping:
                await self._wind_down()
            else:
                await asyncio.shield(self._flush())

    async def _admit(self, claimed: list[StoredDelivery]) -> None:
        """Queue each delivery on its repository's lane, in claim order (GitHub's order).

        Deliveries about one repository run one after the other; repositories run side by side,
        at most `parallel_repositories` at once. A delivery about no repository (an installation
        event) waits for every lane to finish, runs alone, and only then is the rest admitted.
        """
        for delivery in claimed:
            self._claimed[delivery.id] = delivery
        for delivery in claimed:
            if self._stopping:
                return
            if delivery.repository is None:
                await self._drain()
                if not self._stopping:
                    await self._run_one(delivery)
                continue
            self._queues.setdefault(delivery.repository, collections.deque()).append(delivery)
            if delivery.repository not in self._lanes:
                self._lanes[delivery.repository] = asyncio.get_running_loop().create_task(
                    self._run_lane(delivery.repository), name=f"webhook-lane {delivery.repository}"
                )

    async def _run_lane(self, repository: str) -> None:
        """Handle one repository's queued deliveries in order until its queue is empty."""
        queue = self._queues[repository]
        try:
            async with self._slots:
                while queue and not self._stopping:
                    await self._run_one(queue.popleft())
        finally:
            # No await between the last look at the queue and leaving: a delivery admitted
            # meanwhile either found this lane still registered (and was run) or starts a new one.
            del self._lanes[repository]
            if not queue:
                self._queues.pop(repository, None)

    async def _run_one(self, delivery: StoredDelivery) -> None:
        begun = time.monotonic()
        error = await self.handle(delivery)
        self._outcomes.add(delivery.id, error)
        self._claimed.pop(delivery.id, None)
        if self.services.metrics is not None:
            self.services.metrics.webhook_delivery(delivery.event, "processed" if error is None else "failed")
        self._wakeup.set()  # room for the next claim
        if self._intake_is_busy():
            await self._give_way(time.monotonic() - begun)
        if time.monotonic() - self._outcomes.flushed_at >= self.flush_interval:
            await self._flush()

    async def _drain(self) -> None:
        """Wait until every lane has finished its queue (or stopped)."""
        while self._lanes:
            await asyncio.gather(*self._lanes.values(), return_exceptions=True)

    async def _wind_down(self) -> None:
        """On stop: end the lanes, record what finished, give back what was claimed and not run
        (a delivery whose handler the stop cut short included)."""
        lanes = list(self._lanes.values())
        for lane in lanes:
            lane.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        self._queues.clear()
        await asyncio.shield(self._flush())
        unfinished, self._claimed = list(self._claimed), {}
        if unfinished:
            try:
                await asyncio.shield(deliveries.release(self.database, unfinished))
            except Exception as exc:  # they are taken back at the next start (or after the lease)
                log.warning("could not give back %d claimed webhook deliveries: %s", len(unfinished), exc)

    def _intake_is_busy(self) -> bool:
        return self.intake_busy is not None and 0 < self.busy_share < 1 and self.intake_busy()

    async def _give_way(self, spent: float) -> None:
        """Pause so that handling takes about `busy_share` of the time while webhooks arrive."""
        await asyncio.sleep(min(self.max_pause, spent * (1 / self.busy_share - 1)))

    async def _flush(self) -> None:
        """Record finished deliveries in one transaction; on failure they wait for the next flush."""
        done, failed = self._outcomes.take()
        if not (done or failed):
            return
        try:
            await deliveries.record_outcomes(self.database, done, failed)
        except Exception as exc:
            self._outcomes.put_back(done, failed)
            log.warning("could not record %d webhook outcomes yet: %s", len(done) + len(failed), exc)
            return
        self.processed += len(done)
        self.failed += len(failed)

    async def handle(self, delivery: StoredDelivery) -> str | None:
        """Dispatch one delivery; returns None when every handler succeeded, else the error text."""
        with correlated(delivery.delivery_id):
            ctx = WebhookContext(
                services=self.services,
                delivery_id=delivery.delivery_id,
                installation_id=delivery.installation_id,
                repository=delivery.repository,
            )
            try:
                event = sansio.Event(orjson.loads(delivery.payload), event=delivery.event, delivery_id=delivery.delivery_id)
                await asyncio.wait_for(self.router.dispatch(event, ctx), self.handler_timeout)
            except asyncio.TimeoutError:
                log.error("webhook %s %s timed out after %ss", delivery.event, delivery.delivery_id, self.handler_timeout)
                return f"handler timed out after {self.handler_timeout}s"
            except Exception as exc:
                log.exception("webhook %s %s failed (attempt %d)", delivery.event, delivery.delivery_id, delivery.attempts)
                return f"{type(exc).__name__}: {exc}"
            log.debug("webhook %s.%s %s handled", delivery.event, delivery.action, delivery.delivery_id)
            return None


class _Outcomes:
    """Results waiting to be written in one transaction (several lanes add to it)."""

    def __init__(self) -> None:
        self.done: list[int] = []
        self.failed: list[tuple[int, str]] = []
        self.flushed_at = time.monotonic()

    def add(self, delivery_pk: int, error: str | None) -> None:
        if error is None:
            self.done.append(delivery_pk)
        else:
            self.failed.append((delivery_pk, error))

    def take(self) -> tuple[list[int], list[tuple[int, str]]]:
        done, failed, self.done, self.failed = self.done, self.failed, [], []
        self.flushed_at = time.monotonic()
        return done, failed

    def put_back(self, done: list[int], failed: list[tuple[int, str]]) -> None:
        self.done[:0] = done
        self.failed[:0] = failed


DISPATCHER = web.AppKey("dispatcher", Dispatcher)


async def start_dispatcher(app: web.Application) -> None:
    """`on_startup` hook: runs after every cleanup_ctx, so GitHub, the engine and the store are ready."""
    await app[DISPATCHER].start()


async def stop_dispatcher(app: web.Application) -> None:
    """`on_shutdown` hook: stops before the store and the HTTP session close."""
    await app[DISPATCHER].stop()
