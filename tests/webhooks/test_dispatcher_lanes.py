"""Head-of-line blocking: a delivery about no repository runs in its installation's own lane, and
only installation changes are barriers, for their own installation (bot/lanes.py,
bot/store/delivery_order.py)."""

from __future__ import annotations

import asyncio

from bot.dispatcher import Dispatcher
from bot.store.deliveries import DeliveryStore
from bot.store.delivery_order import Blockers, Slot, lane_key
from bot.store.dispatchers import DispatcherRegistry
from tests.webhooks.dispatching import about, logging_router, services_for, store, wait_until


async def test_a_slow_delivery_about_no_repository_does_not_hold_up_the_repositories(database):
    release = asyncio.Event()
    events: list[str] = []
    await store(database, about("adv", None, installation=None, event="security_advisory"),
                about("p1", "acme/app"), about("p2", "acme/site"))
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"adv"}, release=release))
    run = asyncio.ensure_future(dispatcher.run_once())
    try:
        await wait_until(lambda: "end p1" in events and "end p2" in events)
        assert "end adv" not in events  # still running, and nobody waited for it
    finally:
        release.set()
    assert await run == 3


async def test_deliveries_about_no_repository_keep_their_order_within_their_installation(database):
    release = asyncio.Event()
    events: list[str] = []
    await store(database, about("x1", None, event="security_advisory"), about("x2", None, event="security_advisory"),
                about("y1", None, installation=7, event="security_advisory"))
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"x1"}, release=release))
    run = asyncio.ensure_future(dispatcher.run_once())
    try:
        await wait_until(lambda: "end y1" in events)  # another installation's lane
        assert "start x2" not in events
    finally:
        release.set()
    assert await run == 3
    assert events.index("end x1") < events.index("start x2")


async def test_an_installation_change_is_a_barrier_for_its_installation_only(database):
    """It waits for its installation's earlier deliveries, runs alone for that installation and
    holds its later ones; another installation's lanes go on all along."""
    release = asyncio.Event()
    events: list[str] = []
    await store(database, about("a1", "seven/slow", installation=7), about("i1", None, installation=7, event="installation"),
                about("b1", "acme/app"), about("c1", "seven/other", installation=7), about("b2", "acme/app"))
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"a1"}, release=release))
    run = asyncio.ensure_future(dispatcher.run_once())
    try:
        await wait_until(lambda: "end b2" in events)  # installation 42 went on past installation 7's barrier
        assert "start i1" not in events and "start c1" not in events
    finally:
        release.set()
    assert await run == 5
    assert events.index("end a1") < events.index("start i1") < events.index("end i1") < events.index("start c1")
    assert (await DeliveryStore(database).count_by_status())["done"] == 5


async def test_a_barrier_admitted_while_its_installation_runs_waits_and_holds_what_follows(database):
    """Streamed claims: an installation change claimed while earlier deliveries of its installation
    still run waits for them; the ones claimed after it wait for it."""
    release = asyncio.Event()
    events: list[str] = []
    dispatcher = Dispatcher(services_for(database), logging_router(events, hold={"a1"}, release=release),
                            poll_interval=30, batch_size=10)
    await dispatcher.start()
    try:
        await store(database, about("a1", "acme/app"))
        dispatcher.wake()
        await wait_until(lambda: "start a1" in events)
        await store(database, about("i1", None, event="installation_repositories"), about("b1", "acme/site"),
                    about("o1", "other/app", installation=9))
        dispatcher.wake()
        await wait_until(lambda: "end o1" in events)
        await asyncio.sleep(0.1)
        assert "start i1" not in events and "start b1" not in events
        release.set()
        await wait_until(lambda: "end b1" in events)
    finally:
        await dispatcher.stop()
    assert events.index("end a1") < events.index("start i1") < events.index("end i1") < events.index("start b1")


async def test_claims_keep_barriers_across_replicas(database):
    """A replica does not claim past another owner's installation change, nor an installation
    change past another owner's delivery of its installation; other installations are claimed."""
    await DispatcherRegistry(database).register("other")
    await store(database, about("i1", None, installation=7, event="installation"), about("p1", "acme/app"))
    await DeliveryStore(database).claim_pending(10, "other")
    await store(database, about("s1", "seven/site", installation=7), about("i2", None, event="installation"),
                about("q1", "acme/app"), about("n1", None, installation=7, event="security_advisory"),
                about("r1", "eight/site", installation=8))
    claimed = await DeliveryStore(database).claim_pending(10, "me")
    assert [d.delivery_id for d in claimed] == ["r1"]


def test_blockers_pass_on_what_waits():
    blockers = Blockers([Slot(5, "push", 42, "acme/app")])
    assert blockers.holds(Slot(9, "push", 42, "acme/app"))
    assert not blockers.holds(Slot(3, "push", 42, "acme/app"))  # older than what it would wait for
    assert not blockers.holds(Slot(9, "push", 42, "acme/site"))
    assert blockers.holds(Slot(9, "installation", 42, None))
    assert not blockers.holds(Slot(9, "installation", 7, None))
    blockers.add(Slot(9, "installation", 42, None))  # left waiting: what follows it waits too
    assert blockers.holds(Slot(10, "push", 42, "acme/site"))
    assert not blockers.holds(Slot(10, "push", 7, "seven/site"))
    assert lane_key(Slot(1, "security_advisory", None, None)) != lane_key(Slot(1, "security_advisory", 42, None))
