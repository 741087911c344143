"""The dispatcher: stored deliveries run through a router in order, failures recorded, restarts resume."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gidgethub import routing

from bot.dispatcher import Dispatcher, WebhookContext
from bot.store import deliveries
from bot.store.base import utcnow
from bot.store.deliveries import DeliveryStore, NewDelivery
from tests.webhooks.dispatching import services_for, store, wait_until


def make(delivery_id: str, event: str = "push", action: str | None = None, payload: str = '{"ref": "main"}') -> NewDelivery:
    return NewDelivery(delivery_id, event, action, 42, "acme/app", payload, utcnow())


def recording_router(seen: list, *, fail_on: str = "boom") -> routing.Router:
    router = routing.Router()

    @router.register("push")
    async def push(event, ctx: WebhookContext):
        assert isinstance(ctx, WebhookContext)
        seen.append((event.delivery_id, ctx.delivery_id, ctx.installation_id, ctx.repository, event.data["ref"]))

    @router.register(fail_on)
    async def explode(event, ctx):
        raise ValueError(f"handler exploded on {event.delivery_id}")

    return router


async def test_processes_in_order_and_marks_done(database):
    seen: list = []
    await store(database, make("p1"), make("p2"), make("p3"))
    dispatcher = Dispatcher(services_for(database), recording_router(seen))
    assert await dispatcher.run_once() == 3
    assert [s[0] for s in seen] == ["p1", "p2", "p3"]
    assert seen[0] == ("p1", "p1", 42, "acme/app", "main")
    assert (await DeliveryStore(database).count_by_status())["done"] == 3
    assert await dispatcher.run_once() == 0  # nothing runs twice


async def test_a_raising_handler_marks_failed_and_the_rest_still_run(database):
    seen: list = []
    await store(database, make("ok1"), make("bad", event="boom"), make("ok2"), make("junk", payload="{not json"))
    dispatcher = Dispatcher(services_for(database), recording_router(seen))
    assert await dispatcher.run_once() == 4
    assert [s[0] for s in seen] == ["ok1", "ok2"]
    bad = await DeliveryStore(database).get("bad")
    assert bad.status == "failed" and bad.attempts == 1
    assert bad.last_error == "ValueError: handler exploded on bad"
    junk = await DeliveryStore(database).get("junk")
    assert junk.status == "failed" and "JSONDecodeError" in junk.last_error
    assert dispatcher.failed == 2 and dispatcher.processed == 2


async def test_a_hanging_handler_times_out(database):
    router = routing.Router()

    @router.register("push")
    async def hang(event, ctx):
        await asyncio.sleep(30)

    await store(database, make("slow"))
    dispatcher = Dispatcher(services_for(database), router, handler_timeout=0.05)
    assert await dispatcher.run_once() == 1
    assert "timed out" in (await DeliveryStore(database).get("slow")).last_error


async def test_background_task_is_woken_and_survives_failures(database):
    seen: list = []
    dispatcher = Dispatcher(services_for(database), recording_router(seen), poll_interval=30)
    await dispatcher.start()
    try:
        await store(database, make("w1"), make("w2", event="boom"), make("w3"))
        dispatcher.wake()
        await wait_until(lambda: dispatcher.processed + dispatcher.failed == 3)
    finally:
        await dispatcher.stop()
    assert [s[0] for s in seen] == ["w1", "w3"]
    counts = await DeliveryStore(database).count_by_status()
    assert counts["done"] == 2 and counts["failed"] == 1


async def test_restart_resumes_what_was_stored_or_interrupted(database):
    await store(database, make("r1"), make("r2"), make("r3"))
    [r1] = await DeliveryStore(database).claim_pending(1)  # r1: a previous process crashed while handling it
    await _backdate_claim(database, r1.id, hours=1)
    seen: list = []
    dispatcher = Dispatcher(services_for(database), recording_router(seen), poll_interval=30)
    await dispatcher.start()  # no wake(): start-up alone must find the work
    try:
        await wait_until(lambda: dispatcher.processed == 3)
    finally:
        await dispatcher.stop()
    assert [s[0] for s in seen] == ["r1", "r2", "r3"]
    assert (await DeliveryStore(database).get("r1")).attempts == 2
    assert (await DeliveryStore(database).count_by_status())["done"] == 3


async def _backdate_claim(database, pk: int, *, hours: float) -> None:
    import sqlalchemy as sa

    t = deliveries.webhook_deliveries
    async with database.begin() as conn:
        await conn.execute(sa.update(t).where(t.c.id == pk).values(claimed_at=utcnow() - timedelta(hours=hours)))


async def test_a_fresh_claim_is_a_live_replicas_until_its_lease_runs_out(database):
    """SQLite belongs to one process: at start-up every claim is a dead one. On PostgreSQL another
    replica may be handling it: it is left alone until older than the lease, then taken back."""
    await store(database, make("live"))
    [_claimed] = await DeliveryStore(database).claim_pending(1)
    seen: list = []
    dispatcher = Dispatcher(services_for(database), recording_router(seen), poll_interval=0.05)
    dispatcher.claim_lease = 0.6
    await dispatcher.start()
    try:
        if database.dialect == "sqlite":
            await wait_until(lambda: dispatcher.processed == 1)
        else:
            await asyncio.sleep(0.3)
            assert seen == [] and (await DeliveryStore(database).get("live")).status == "processing"
            await wait_until(lambda: dispatcher.processed == 1)  # the sweep after the lease
    finally:
        await dispatcher.stop()
    assert [s[0] for s in seen] == ["live"]
    assert (await DeliveryStore(database).get("live")).attempts == 2


async def test_stop_gives_unstarted_claims_back(database):
    await store(database, *(make(f"s{i}") for i in range(5)))
    router = routing.Router()
    dispatcher: Dispatcher | None = None

    @router.register("push")
    async def stop_after_first(event, ctx):
        await dispatcher.stop()  # while a batch is in hand (run_once runs in no task of its own)

    dispatcher = Dispatcher(services_for(database), router)
    assert await dispatcher.run_once() == 1
    counts = await DeliveryStore(database).count_by_status()
    assert counts == {"pending": 4, "processing": 0, "done": 1, "failed": 0}


async def test_context_github_uses_the_app_client_for_the_installation(database):
    calls = []

    class FakeApp:  # the contract's GitHubApp.client(installation_id) — only the call is checked here
        async def client(self, installation_id):
            calls.append(installation_id)
            return f"client-for-{installation_id}"

    services = services_for(database, github=FakeApp())
    ctx = WebhookContext(services, "d1", installation_id=42, repository="acme/app")
    assert await ctx.github() == "client-for-42"
    assert await ctx.github() == "client-for-42"
    assert calls == [42]  # created lazily, once


async def test_handlers_give_way_while_webhooks_arrive(database):
    """While the intake is busy, handling takes about `busy_share` of the time (acks come first)."""
    import time

    router = routing.Router()

    @router.register("push")
    async def slow(event, ctx):
        await asyncio.sleep(0.02)

    await store(database, make("b1"), make("b2"), make("b3"))
    dispatcher = Dispatcher(services_for(database), router, busy_share=0.25, intake_busy=lambda: True)
    started = time.monotonic()
    assert await dispatcher.run_once() == 3
    # 3 x 20 ms of handling, each followed by a 60 ms pause (25% share)
    assert time.monotonic() - started >= 0.2
    assert (await DeliveryStore(database).count_by_status())["done"] == 3


async def test_the_dispatcher_prunes_expired_deliveries_as_it_runs(database):
    await store(database, make("old"))
    [old] = await DeliveryStore(database).claim_pending(1)
    await DeliveryStore(database).record_outcomes([old.id], [])
    import sqlalchemy as sa

    t = deliveries.webhook_deliveries
    async with database.begin() as conn:
        expired = utcnow() - deliveries.KEEP_DONE - timedelta(hours=1)
        await conn.execute(sa.update(t).where(t.c.id == old.id).values(processed_at=expired))
    dispatcher = Dispatcher(services_for(database), recording_router([]), poll_interval=0.05)
    await dispatcher.start()
    try:
        for _ in range(200):
            if await DeliveryStore(database).get("old") is None:
                break
            await asyncio.sleep(0.01)
    finally:
        await dispatcher.stop()
    assert await DeliveryStore(database).get("old") is None


def _about(delivery_id: str, repository: str | None, event: str = "push") -> NewDelivery:
    return NewDelivery(delivery_id, event, None, 42, repository, '{"ref": "main"}', utcnow())


async def test_repositories_run_side_by_side_and_each_in_order(database):
    """A slow repository does not hold up the others; within one repository GitHub's order holds;
    an installation event (no repository) waits for what came before it and runs alone."""
    await store(database, _about("a1", "acme/slow"), _about("b1", "acme/fast"), _about("a2", "acme/slow"),
                _about("b2", "acme/fast"), _about("i1", None, "installation"), _about("b3", "acme/fast"))
    events: list[str] = []
    slow_may_finish = asyncio.Event()
    router = routing.Router()

    @router.register("push")
    async def push(event, ctx):
        events.append(f"start {event.delivery_id}")
        if ctx.repository == "acme/slow" and event.delivery_id == "a1":
            await slow_may_finish.wait()
        events.append(f"end {event.delivery_id}")

    @router.register("installation")
    async def installation(event, ctx):
        events.append(f"start {event.delivery_id}")
        events.append(f"end {event.delivery_id}")

    dispatcher = Dispatcher(services_for(database), router)
    run = asyncio.ensure_future(dispatcher.run_once())
    for _ in range(200):
        if "end b2" in events:
            break
        await asyncio.sleep(0.01)
    assert "end b2" in events and "start a2" not in events, events  # acme/fast went on meanwhile
    assert "start i1" not in events  # the installation event waits for everything before it
    slow_may_finish.set()
    assert await run == 6
    assert events.index("end a1") < events.index("start a2")
    assert max(events.index(f"end {d}") for d in ("a1", "a2", "b1", "b2")) < events.index("start i1")
    assert events.index("end i1") < events.index("start b3")
    assert (await DeliveryStore(database).count_by_status())["done"] == 6


async def test_a_handler_cut_short_by_stop_gives_its_delivery_back(database):
    await store(database, make("stuck"))
    entered = asyncio.Event()
    router = routing.Router()

    @router.register("push")
    async def forever(event, ctx):
        entered.set()
        await asyncio.Event().wait()

    dispatcher = Dispatcher(services_for(database), router)
    await dispatcher.start()
    await asyncio.wait_for(entered.wait(), 5)
    await dispatcher.stop(timeout=0.2)
    assert (await DeliveryStore(database).get("stuck")).status == "pending"


async def test_a_slow_repository_does_not_hold_up_deliveries_that_arrive_later(database):
    """Claims are streamed: while one repository's handler is slow, deliveries stored afterwards for
    other repositories are claimed and handled; the slow repository's next one waits its turn; and
    no more than `batch_size` deliveries are ever claimed and unfinished."""
    slow_may_finish = asyncio.Event()
    events: list[str] = []
    router = routing.Router()

    @router.register("push")
    async def push(event, ctx):
        events.append(f"start {event.delivery_id}")
        if event.delivery_id == "a1":
            await slow_may_finish.wait()
        events.append(f"end {event.delivery_id}")

    dispatcher = Dispatcher(services_for(database), router, poll_interval=30, batch_size=4)
    await dispatcher.start()
    try:
        await store(database, _about("a1", "acme/slow"), _about("b1", "acme/fast"))
        dispatcher.wake()
        await wait_until(lambda: "start a1" in events and "end b1" in events)
        await store(database, _about("a2", "acme/slow"), _about("c1", "acme/other"), _about("b2", "acme/fast"),
                    _about("c2", "acme/other"), _about("c3", "acme/other"))
        dispatcher.wake()
        await wait_until(lambda: "end b2" in events and "end c1" in events)
        assert "start a2" not in events, events  # acme/slow keeps GitHub's order
        await wait_until(lambda: "end c3" in events)  # claimed as room came free, a1 still running
        # a1 running and a2 queued: room for two more claims, not four
        await store(database, *(_about(f"a{n}", "acme/slow") for n in range(3, 7)))
        dispatcher.wake()
        await asyncio.sleep(0.3)
        assert [d.delivery_id for d in await _pending(database)] == ["a5", "a6"]
        slow_may_finish.set()
        await wait_until(lambda: dispatcher.processed == 11)
    finally:
        await dispatcher.stop()
    assert [e for e in events if e.startswith("start a")] == [f"start a{n}" for n in range(1, 7)]
    assert events.index("end a1") < events.index("start a2")
    assert events.index("end c1") < events.index("start c2") < events.index("start c3")
    assert (await DeliveryStore(database).count_by_status())["done"] == 11


async def _pending(database):
    import sqlalchemy as sa

    t = deliveries.webhook_deliveries
    async with database.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.delivery_id).where(t.c.status == "pending").order_by(t.c.id))).all()
    return rows


async def test_outcomes_that_cannot_be_recorded_are_kept_for_the_next_flush(database, monkeypatch):
    await store(database, make("o1"), make("o2"))
    real_record = deliveries.record_outcomes
    attempts = []

    async def flaky(*args):
        attempts.append(args)
        if len(attempts) == 1:
            raise ConnectionError("database went away")
        await real_record(*args)

    monkeypatch.setattr(deliveries, "record_outcomes", flaky)
    dispatcher = Dispatcher(services_for(database), recording_router([]), poll_interval=0.05, flush_interval=0.05)
    await dispatcher.start()
    try:
        await wait_until(lambda: dispatcher.processed == 2)
    finally:
        await dispatcher.stop()
    assert len(attempts) >= 2
    assert (await DeliveryStore(database).count_by_status())["done"] == 2
