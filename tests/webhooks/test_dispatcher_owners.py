"""Dispatcher owners: each process registers with a heartbeat, its claims name it, the claims of one
that stopped beating are taken back within seconds and run before the later deliveries of their
repository, and nobody overtakes the claims of a live owner (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import sqlalchemy as sa
from gidgethub import routing

from bot.dispatcher import Dispatcher
from bot.store import deliveries
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryStore
from bot.store.dispatchers import DispatcherRegistry
from tests.webhooks.dispatching import about, logging_router, services_for, store, wait_until


async def status(database, delivery_id: str) -> tuple[str, str | None]:
    stored = await DeliveryStore(database).get(delivery_id)
    assert stored is not None
    return stored.status, stored.claimed_by


@contextlib.asynccontextmanager
async def beating(database, owner: str, interval: float = 0.05) -> AsyncIterator[None]:
    """`owner` is a live replica elsewhere: registered, beating, striking nobody off."""
    await DispatcherRegistry(database).register(owner)

    async def beat() -> None:
        while True:
            await DispatcherRegistry(database).beat(owner, stale_after=3600, legacy_lease=3600)
            await asyncio.sleep(interval)

    task = asyncio.ensure_future(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_running_dispatcher_is_registered_its_claims_name_it_and_stopping_leaves_nothing(database):
    release = asyncio.Event()
    events: list[str] = []
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"h1"}, release=release), poll_interval=0.05)
    await dispatcher.start()
    try:
        [me] = await DispatcherRegistry(database).registered()
        assert (me.id, me.pid) == (dispatcher.owner, os.getpid()) and me.host
        await store(database, about("h1", "acme/app"), about("h2", "acme/app"))
        dispatcher.wake()
        await wait_until(lambda: "start h1" in events)
        assert await status(database, "h1") == ("processing", dispatcher.owner)
        assert await status(database, "h2") == ("processing", dispatcher.owner)  # queued behind h1
        before = (await DispatcherRegistry(database).registered())[0].heartbeat_at
        await asyncio.sleep(dispatcher.heartbeat_interval + 0.3)
        assert (await DispatcherRegistry(database).registered())[0].heartbeat_at > before
    finally:
        await dispatcher.stop(timeout=0.2)
    assert await DispatcherRegistry(database).registered() == []
    assert [(await status(database, d))[0] for d in ("h1", "h2")] == ["pending", "pending"]


async def test_claims_of_an_owner_that_stopped_beating_are_taken_back_in_seconds_and_run_first(database):
    """A dead replica's claims block the later deliveries of their repository (not the others') until
    its heartbeat is stale; then they are taken back and run before those later ones. (SQLite
    belongs to one process: there, at start-up, every other owner is a dead one.)"""
    await store(database, about("a1", "acme/app"), about("a2", "acme/app"))
    await DispatcherRegistry(database).register("dead")
    assert [d.delivery_id for d in await DeliveryStore(database).claim_pending(10, "dead")] == ["a1", "a2"]
    died = time.monotonic()  # it beat once, at registration, and never again
    await store(database, about("a3", "acme/app"), about("b1", "acme/other"))
    events: list[str] = []
    dispatcher = Dispatcher(services_for(database), logging_router(events), poll_interval=0.05,
                            heartbeat_interval=0.1, owner_timeout=1.0)
    await dispatcher.start()
    try:
        if database.dialect == "postgresql":
            await wait_until(lambda: "end b1" in events)
            assert "start a3" not in events and await status(database, "a3") == ("pending", None)
        await wait_until(lambda: "end a3" in events, timeout=10)
        taken_back_after = time.monotonic() - died
    finally:
        await dispatcher.stop()
    assert [e for e in events if e.split()[1].startswith("a")] == [
        "start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
    if database.dialect == "postgresql":
        assert 1.0 - 0.1 <= taken_back_after < 1.0 + 6.0, taken_back_after  # not before the timeout; soon after, not a lease later
    else:
        assert taken_back_after < 6.0, taken_back_after
    assert [d.id for d in await DispatcherRegistry(database).registered()] == []
    assert (await DeliveryStore(database).get("a1")).attempts == 2
    assert dispatcher.taken_back == 2


async def test_a_live_owners_claims_are_never_overtaken(database):
    events: list[str] = []
    dispatcher = Dispatcher(services_for(database), logging_router(events), poll_interval=30,
                            heartbeat_interval=0.1, owner_timeout=0.5)
    await dispatcher.start()  # first: on SQLite a start-up strikes every other owner off
    await asyncio.sleep(0.2)  # its first look found nothing; it now waits for a wake()
    try:
        async with beating(database, "other"):
            await store(database, about("a1", "acme/app"), about("i1", None, installation=7, event="installation"))
            claimed = await DeliveryStore(database).claim_pending(10, "other")
            assert [d.delivery_id for d in claimed] == ["a1", "i1"]
            await store(database, about("a2", "acme/app"), about("b1", "acme/other"),
                        about("c1", "x/site", installation=7), about("d1", "y/site", installation=8))
            dispatcher.wake()
            await wait_until(lambda: "end b1" in events and "end d1" in events)
            await asyncio.sleep(1.0)  # twice the timeout: the other one beats, so it is alive
            # a2 follows a1 (its repository); c1 follows the installation change of installation 7
            assert sorted(events) == ["end b1", "end d1", "start b1", "start d1"], events
            assert await status(database, "a1") == ("processing", "other")
            await DeliveryStore(database).record_outcomes([d.id for d in claimed], [])  # the other one finishes
            dispatcher.wake()
            await wait_until(lambda: "end a2" in events and "end c1" in events)
    finally:
        await dispatcher.stop()


async def test_claims_queued_behind_a_slow_delivery_stay_while_their_owner_beats(database):
    """The heartbeat goes on while a handler is slow: nothing is taken back and run twice."""
    await store(database, about("q1", "acme/app"), about("q2", "acme/app"))
    runs: list[str] = []
    router = routing.Router()

    @router.register("push")
    async def push(event, ctx):
        runs.append(event.delivery_id)
        if event.delivery_id == "q1":
            await asyncio.sleep(1.5)

    dispatcher = Dispatcher(services_for(database), router, poll_interval=0.05, heartbeat_interval=0.1, owner_timeout=0.4)
    await dispatcher.start()
    try:
        async with beating(database, "sweeper"):  # another replica sweeping with the same timeout
            await asyncio.sleep(0.2)
            await DispatcherRegistry(database).beat("sweeper", stale_after=0.4, legacy_lease=3600)
            await wait_until(lambda: dispatcher.processed == 2)
            await DispatcherRegistry(database).beat("sweeper", stale_after=0.4, legacy_lease=3600)
    finally:
        await dispatcher.stop()
    assert runs == ["q1", "q2"]
    assert [(await DeliveryStore(database).get(d)).attempts for d in ("q1", "q2")] == [1, 1]


async def test_a_dispatcher_taken_for_dead_forgets_its_queued_claims_and_registers_again(database):
    """A process that stalled past the timeout was struck off and its claims taken back: it must
    not run the queued ones behind another replica's back; it registers again and claims anew."""
    release = asyncio.Event()
    events: list[str] = []
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"s1"}, release=release),
                            poll_interval=0.05, heartbeat_interval=0.1, owner_timeout=0.5)
    await dispatcher.start()
    first = dispatcher.owner
    try:
        await store(database, about("s1", "acme/app"), about("s2", "acme/app"))
        dispatcher.wake()
        await wait_until(lambda: "start s1" in events)
        await DispatcherRegistry(database).register("sweeper")  # strikes everyone else off, as if `first` were silent
        beat = await DispatcherRegistry(database).beat("sweeper", stale_after=0, legacy_lease=3600)
        assert beat.dead == [first] and beat.taken_back == 2
        for _ in range(500):
            if {r.id for r in await DispatcherRegistry(database).registered()} == {"sweeper", dispatcher.owner}:
                break
            await asyncio.sleep(0.01)
        assert {r.id for r in await DispatcherRegistry(database).registered()} == {"sweeper", dispatcher.owner} != {"sweeper", first}
        release.set()
        await wait_until(lambda: "end s2" in events)
        second = dispatcher.owner
    finally:
        await dispatcher.stop()
    assert events == ["start s1", "end s1", "start s2", "end s2"]  # each once; s2 claimed again by the new id
    s2 = await DeliveryStore(database).get("s2")
    assert (s2.status, s2.claimed_by) == ("done", second)
    assert (await DeliveryStore(database).get("s1")).status == "done"  # s1 ran here, to the end


async def test_claims_from_before_owners_are_taken_back_after_the_lease(database):
    """A claim naming no owner (a process from before revision 0006) keeps the old lease rule."""
    await store(database, about("old", "acme/app"))
    await DeliveryStore(database).claim_pending(1)
    t = deliveries.webhook_deliveries
    async with database.begin() as conn:
        await conn.execute(sa.update(t).values(claimed_at=utcnow() - timedelta(seconds=5)))
    await DispatcherRegistry(database).register("me")
    kept = await DispatcherRegistry(database).beat("me", stale_after=10, legacy_lease=60)
    assert kept.taken_back == 0 and await status(database, "old") == ("processing", None)
    taken = await DispatcherRegistry(database).beat("me", stale_after=10, legacy_lease=1)
    assert taken.taken_back == 1 and await status(database, "old") == ("pending", None)
