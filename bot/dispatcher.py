"""The webhook dispatcher: runs stored deliveries through the handlers' router, once each, in
GitHub's order within each repository (repositories side by side).

The intake stores and acknowledges; this background task does the work afterwards, so a slow or
failing handler never delays GitHub's 2xx and never loses an event. A handler exception marks
that delivery failed (with its error) and the dispatcher moves on. Claims are streamed into lanes
(`bot.lanes`), so a slow repository holds up only itself. Each dispatcher registers itself with a
heartbeat (`bot.store.dispatchers`) and its claims name it: when a process dies, another (or its
own successor) takes its claims back seconds after its heartbeat stops, and no replica overtakes
them meanwhile (`deliveries.claim_pending`), so GitHub's order holds across a crash too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web
from gidgethub import routing, sansio

from bot.lanes import Lanes
from bot.logs import correlated
from bot.store import dispatchers
from bot.store.deliveries import StoredDelivery

if TYPE_CHECKING:
    from bot.engine.ports import GitHubInstallations
    from bot.metrics import Metrics
    from bot.store.db import Database
    from bot.store.deliveries import DeliveryStore
    from bot.store.dispatchers import DispatcherRegistry

log = logging.getLogger(__name__)


class DispatchServices(Protocol):
    """What the dispatcher itself uses of the services it hands to the handlers (bot/services.py)."""

    @property
    def database(self) -> Database: ...

    @property
    def github(self) -> GitHubInstallations: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def deliveries(self) -> DeliveryStore: ...

    @property
    def dispatchers(self) -> DispatcherRegistry: ...


@dataclass
class WebhookContext:
    """What a webhook handler gets beside the event: the services and who the delivery is about."""

    services: DispatchServices
    delivery_id: str
    installation_id: int | None = None
    repository: str | None = None  # "owner/name"
    _github: Any = field(default=None, init=False, repr=False)

    async def github(self):
        """The installation-authenticated GitHub client for this delivery (created on first use)."""
        if self._github is None:
            if self.installation_id is None:
                raise RuntimeError(f"delivery {self.delivery_id} names no installation")
            self._github = await self.services.github.client(self.installation_id)
        return self._github


class Dispatcher:
    """One background task that claims stored deliveries oldest first and dispatches them (see `run_once`)."""

    def __init__(
        self,
        services: DispatchServices,
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
        wakeup: asyncio.Event | None = None,
        heartbeat_interval: float = 2.0,
        owner_timeout: float = 10.0,
    ):
        self.services = services
        self.router = router
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.handler_timeout = handler_timeout
        self.flush_interval = flush_interval
        #: While webhooks are arriving (`intake_busy()`), handlers get at most this share of the
        #: time: acknowledging fast comes first, the stored work waits a little (it is durable).
        self.busy_share = busy_share
        self.max_pause = max_pause  # a slow handler (waiting on GitHub) does not stall the queue
        self.intake_busy = intake_busy
        #: This process beats every `heartbeat_interval` seconds; one silent for `owner_timeout`
        #: is taken for dead and its claims are taken back (a few missed beats: a busy event loop
        #: or a slow commit must not pass for a death).
        self.heartbeat_interval = heartbeat_interval
        self.owner_timeout = owner_timeout
        #: Claims naming no owner (`run_once`, or a process from before revision 0006) are taken
        #: back once older than this: no handler runs longer than `handler_timeout`.
        self.claim_lease = handler_timeout + 30.0
        #: This process's id in the registry while it runs (`start`); None for `run_once` alone.
        self.owner: str | None = None
        self.prune_interval = 3600.0  # handled deliveries expire by days; hourly is plenty
        self._next_prune = 0.0
        #: Set to look for work now (`wake`); the intake's writer may share it (bot/app.py).
        self._wakeup = wakeup or asyncio.Event()
        self._task: asyncio.Task | None = None
        self._heartbeat: asyncio.Task | None = None
        self._claimed: dict[int, StoredDelivery] = {}  # claimed and not finished
        self._lanes = Lanes(self._run_one, parallel=parallel_repositories, stopping=lambda: self._stopping)
        self._outcomes = _Outcomes()
        self._stopping = False
        self.processed = 0
        self.failed = 0
        self.taken_back = 0  # deliveries taken back from dead owners (observability)

    @property
    def database(self) -> Database:
        return self.services.database

    def wake(self) -> None:
        """Called by the intake after storing: look for work now rather than at the next poll."""
        self._wakeup.set()

    async def start(self) -> None:
        """Register, take back what dead owners left, then dispatch and beat in the background."""
        self.owner = dispatchers.new_owner_id()
        await self.services.dispatchers.register(self.owner)
        requeued = await self._beat(at_start=True)
        if requeued:
            log.info("resuming %d webhook deliveries interrupted by a previous process", requeued)
        self._stopping = False
        self._wakeup.set()  # pending rows from before the restart
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.create_task(self._beat_regularly(), name="webhook-dispatcher-heartbeat")
        self._task = loop.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the running handlers finish (up to `timeout`), give unfinished claims back, end the
        task, and leave the registry."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
            self._task = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self.owner is not None:
            owner, self.owner = self.owner, None
            try:
                await asyncio.shield(self.services.dispatchers.deregister(owner))
            except Exception as exc:  # the others take its claims back once its heartbeat is stale
                log.warning("could not leave the dispatcher registry: %s", exc)

    async def _beat_regularly(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._beat()
            except Exception as exc:  # the next beat tries again; others wait `owner_timeout`
                log.warning("webhook dispatcher heartbeat failed: %s", exc)

    async def _beat(self, *, at_start: bool = False) -> int:
        """One heartbeat, which also takes back the claims of dead owners; returns how many.

        On SQLite this process owns the file, so at start-up every other owner is a dead one.
        """
        if self.owner is None:
            return 0
        everyone = at_start and self.database.dialect == "sqlite"
        beat = await self.services.dispatchers.beat(self.owner, stale_after=0 if everyone else self.owner_timeout,
            legacy_lease=None if everyone else self.claim_lease,
        )
        if not beat.registered:
            await self._registration_lost()
        if beat.taken_back:
            self.taken_back += beat.taken_back
            self._wakeup.set()
            if not at_start:
                log.warning("took back %d webhook deliveries from %d dispatcher(s) that stopped beating",
                            beat.taken_back, len(beat.dead))
        return beat.taken_back

    async def _registration_lost(self) -> None:
        """Another process struck this one off (it stalled past `owner_timeout`) and took its claims
        back: forget those not started, and register again under a new id."""
        old, self.owner = self.owner, dispatchers.new_owner_id()
        dropped = self._lanes.drop_queued()
        for delivery in dropped:
            self._claimed.pop(delivery.id, None)
        log.warning("webhook dispatcher %s was taken for dead (heartbeat older than %ss); %d queued deliveries "
                    "left to whoever claims them again", old, self.owner_timeout, len(dropped))
        await self.services.dispatchers.register(self.owner)
        await self.services.deliveries.release([d.id for d in dropped], old)  # claimed after the strike-off

    async def _prune_if_due(self) -> None:
        """Drop handled deliveries past their retention (`deliveries.KEEP_DONE` / `KEEP_FAILED`)."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_interval
        try:
            pruned = await self.services.deliveries.prune()
        except Exception as exc:  # housekeeping: try again at the next interval
            log.warning("could not prune old webhook deliveries: %s", exc)
            return
        if pruned:
            log.info("pruned %d webhook deliveries past their retention", pruned)

    async def _run(self) -> None:
        """Claim while there is room, hand each delivery to its lane, repeat.

        Claims are streamed: a slow lane holds up only its own repository, never the next
        claim. At most `batch_size` deliveries are claimed and unfinished at a time, and a new
        claim waits until half of that room is free, so that claims stay few and batched.
        """
        try:
            while not self._stopping:
                claimed: list[StoredDelivery] = []
                try:
                    await self._prune_if_due()
                    room = self.batch_size - len(self._claimed)
                    if room >= max(1, self.batch_size // 2):
                        claimed = await self.services.deliveries.claim_pending(room, self.owner)
                        self._admit(claimed)
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
                    except TimeoutError:
                        pass
                    self._wakeup.clear()
        finally:
            try:
                await self._lanes.drain()  # handlers already running finish; the lanes take no more
            finally:
                await self._wind_down()

    async def run_once(self) -> int:
        """Claim one batch, handle all of it, record the outcomes; returns how many were handled.

        The background task (`start`) does the same continuously; this is the unit tests and
        one-off runs use (without `start` the claims name no owner).
        """
        claimed = await self.services.deliveries.claim_pending(self.batch_size, self.owner)
        try:
            self._admit(claimed)
            await self._lanes.drain()
            return sum(1 for d in claimed if d.id not in self._claimed)
        finally:
            if self._stopping:
                await self._wind_down()
            else:
                await asyncio.shield(self._flush())

    def _admit(self, claimed: list[StoredDelivery]) -> None:
        """Queue each delivery on its lane, in claim order (GitHub's order; see `bot.lanes`).

        A delivery already in hand (taken back from this process while it ran, when it was taken
        for dead, and claimed again) is not queued twice: its handler's outcome, recorded at
        the next flush, covers the new claim.
        """
        fresh = [d for d in claimed if d.id not in self._claimed and d.id not in self._outcomes]
        for delivery in fresh:
            self._claimed[delivery.id] = delivery
        for delivery in fresh:
            if self._stopping:
                return
            self._lanes.admit(delivery)

    async def _run_one(self, delivery: StoredDelivery) -> None:
        begun = time.monotonic()
        error = await self.handle(delivery)
        self._outcomes.add(delivery.id, error)
        self._claimed.pop(delivery.id, None)
        self.services.metrics.webhook_delivery(delivery.event, "processed" if error is None else "failed")
        self._wakeup.set()  # room for the next claim
        if self._intake_is_busy():
            await self._give_way(time.monotonic() - begun)
        if time.monotonic() - self._outcomes.flushed_at >= self.flush_interval:
            await self._flush()

    async def _wind_down(self) -> None:
        """On stop: end the lanes, record what finished, give back what was claimed and not run
        (a delivery whose handler the stop cut short included)."""
        await self._lanes.cancel()
        await asyncio.shield(self._flush())
        unfinished, self._claimed = list(self._claimed), {}
        if unfinished:
            try:
                await asyncio.shield(self.services.deliveries.release(unfinished, self.owner))
            except Exception as exc:  # taken back once this process's heartbeat is stale (or at the next start)
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
            await self.services.deliveries.record_outcomes(done, failed)
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
            except TimeoutError:
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

    def __contains__(self, delivery_pk: int) -> bool:
        return delivery_pk in self.done or any(pk == delivery_pk for pk, _ in self.failed)

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
