"""Queue, leases, retry, cancel, rollback and the migration guard."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.errors import FlareshipError
from tests.engine.harness import ACCOUNT_ID, inline_app, make_engine, wait_final


def _live_version(sim_env, script="shop-staging"):
    return sim_env.sim.script(ACCOUNT_ID, script).live_version_id()


def _app_image(sim_env, name="shop-staging-appcontainer"):
    app = next(a for a in sim_env.sim.applications.values() if a["name"] == name)
    return app["configuration"]["image"]


async def _deploy(engine, spec, options=None, **req):
    d = await engine.request_deploy(PrepareRequest(environment=spec.environment, app=spec, **req),
                                    options or DeployOptions())
    return await wait_final(engine, d.id)


async def test_fifo_queue_with_positions(engine, sim_env):
    sim_env.sim.set_latency(0.2, "GET", "/accounts/*/workers/subdomain")
    ids = []
    for _ in range(3):
        d = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                        DeployOptions())
        ids.append(d.id)
    positions = [await engine.queue_position(i) for i in ids]
    assert positions == [0, 1, 2]
    assert (await engine.get(ids[2])).queue_position == 2
    counts = await engine.counts()
    assert counts["active"] + counts["queued"] == 3
    done = [await wait_final(engine, i) for i in ids]
    assert all(d.status == "completed" for d in done), [d.error for d in done]
    assert done[0].ended_at <= done[1].started_at and done[1].ended_at <= done[2].started_at
    assert await engine.counts() == {"active": 0, "queued": 0}


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_expired_lease_is_taken_over_and_resumed(sim_env, database):
    offset = {"value": timedelta(0)}

    def clock():
        return datetime.now(UTC) + offset["value"]

    engine, clients = make_engine(sim_env.settings(database.url), database, clock=clock, lease_seconds=30)
    try:
        d = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.deploy(d.id, DeployOptions())
        # A process that died mid-deployment: its lease and an in-progress step remain.
        assert await engine.store.acquire_lease("shop", "staging", "dead-process", d.id, clock(),
                                                timedelta(seconds=30))
        doc = (await engine.get(d.id)).model_dump(mode="json")
        doc["status"] = "in_progress"
        doc["steps"][0]["status"] = "completed"
        doc["steps"][1]["status"] = "running"
        await engine.store.update(d.id, status="in_progress", document=doc)
        await engine.start()
        await asyncio.sleep(0.3)
        assert (await engine.get(d.id)).status == "in_progress"
        assert (await engine.store.get_lease("shop", "staging")).holder == "dead-process"
        offset["value"] = timedelta(seconds=31)  # the dead holder's lease expires
        done = await wait_final(engine, d.id)
        assert done.status == "completed", done.error
        assert done.steps[0].attempt == 0 and done.steps[1].attempt == 1  # step 1 was not re-run
        assert any("Resuming" in line.message for line in await engine.logs(d.id))
        assert await engine.store.get_lease("shop", "staging") is None
    finally:
        await engine.stop()
        await clients.aclose()


async def test_retry_resumes_at_failed_step(engine, sim_env):
    sim_env.sim.set_worker_health("shop-staging", "failing")
    d = await _deploy(engine, inline_app(sim_env), DeployOptions(rollback_on_failure=False, max_retries=2))
    assert d.status == "failed" and d.error.step == "Health check"
    with pytest.raises(FlareshipError) as info:
        await engine.retry(d.id, step_name="Nope")
    assert info.value.code == "SYS_006"
    sim_env.sim.set_worker_health("shop-staging", "healthy")
    uploads = sim_env.sim.count_requests("PUT", "/workers/scripts/")
    retried = await engine.retry(d.id)
    assert retried.attempt == 2 and retried.max_attempts == 2
    done = await wait_final(engine, d.id)
    assert done.status == "completed", done.error
    assert sim_env.sim.count_requests("PUT", "/workers/scripts/") == uploads  # steps 1-7 not re-run
    assert done.step("Health check").attempt == 2 and done.step("Uploading Worker version").attempt == 1
    with pytest.raises(FlareshipError) as info:
        await engine.retry(d.id)
    assert info.value.code == "DEPLOY_010" and info.value.status == 409


async def test_retry_is_bounded_and_named_step(engine, sim_env):
    sim_env.sim.set_worker_health("shop-staging", "failing")
    d = await _deploy(engine, inline_app(sim_env), DeployOptions(rollback_on_failure=False, max_retries=2))
    await engine.retry(d.id, step_name="Configuring routes and DNS")
    d = await wait_final(engine, d.id)
    assert d.status == "failed" and d.attempt == 2
    assert d.step("Configuring routes and DNS").attempt == 2
    with pytest.raises(FlareshipError) as info:
        await engine.retry(d.id)
    assert info.value.code == "DEPLOY_010"
    again = await engine.retry(d.id, max_retries=3)
    assert again.attempt == 3


async def test_cancel_queued_and_running(engine, sim_env):
    sim_env.sim.set_latency(0.3, "GET", "/accounts/*/workers/subdomain")
    first = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                        DeployOptions())
    second = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                         DeployOptions())
    cancelled = await engine.cancel(second.id)
    assert cancelled.status == "cancelled"
    for _ in range(500):
        if (await engine.get(first.id)).step("Configuring routes and DNS").status == "running":
            break
        await asyncio.sleep(0.01)
    await engine.cancel(first.id)
    done = await wait_final(engine, first.id)
    assert done.status == "cancelled"
    assert done.step("Configuring routes and DNS").status == "completed"
    assert done.step("Health check").status == "skipped"
    with pytest.raises(FlareshipError) as info:
        await engine.cancel(first.id)
    assert info.value.code == "DEPLOY_010"


async def test_rollback_restores_version_and_image(engine, sim_env):
    sim_env.add_image(tag="2", seed="second")
    one = await _deploy(engine, inline_app(sim_env))
    two = await _deploy(engine, inline_app(sim_env, image=sim_env.image(tag="2")))
    assert two.status == "completed", two.error
    assert _app_image(sim_env).endswith(sim_env.images["acme/app:2"])
    rb = await engine.rollback(two.id, reason="bad release", actor="carol")
    assert rb.kind == "rollback" and rb.rollback_of == two.id and rb.rollback_target.id == one.release.id
    rb = await wait_final(engine, rb.id)
    assert rb.status == "completed", rb.error
    assert _live_version(sim_env) == one.release.version_id
    assert _app_image(sim_env).endswith(sim_env.images["acme/app:1"])
    live = await engine.live_release("shop", "staging")
    assert live.deployment_id == rb.id and live.version_id == one.release.version_id
    # roll back to an explicit release
    back = await wait_final(engine, (await engine.rollback(rb.id, target_version=two.release.id)).id)
    assert back.status == "completed", back.error
    assert _live_version(sim_env) == two.release.version_id
    with pytest.raises(FlareshipError) as info:
        await engine.rollback(one.id)  # nothing before the first release
    assert info.value.code == "DEPLOY_007"


async def test_rollback_refused_across_migration(engine, sim_env):
    one = await _deploy(engine, inline_app(sim_env))
    two = await _deploy(engine, inline_app(sim_env, classes=("AppContainer", "Counter")))
    assert two.status == "completed", two.error
    assert (one.release.migration_tag, two.release.migration_tag) == ("v1", "v2")
    with pytest.raises(FlareshipError) as info:
        await engine.rollback(two.id)
    assert info.value.code == "DEPLOY_007" and info.value.status == 409
    assert "migration" in info.value.message
    assert _live_version(sim_env) == two.release.version_id


async def test_rollback_on_failure(engine, sim_env):
    sim_env.add_image(tag="2", seed="second")
    one = await _deploy(engine, inline_app(sim_env))
    sim_env.sim.set_worker_health("shop-staging", "failing")
    two = await _deploy(engine, inline_app(sim_env, image=sim_env.image(tag="2")))
    assert two.status == "rolled_back"
    assert two.error.code == "DEPLOY_006"
    assert _live_version(sim_env) == one.release.version_id
    assert _app_image(sim_env).endswith(sim_env.images["acme/app:1"])
    assert (await engine.live_release("shop", "staging")).id == one.release.id
    # Retry is for failed deployments only: a rolled-back one answers DEPLOY_010 (409) and stays as it is.
    with pytest.raises(FlareshipError) as info:
        await engine.retry(two.id)
    assert (info.value.code, info.value.status) == ("DEPLOY_010", 409)
    assert info.value.details == {"status": "rolled_back"}
    assert (await engine.get(two.id)).status == "rolled_back"
    assert _live_version(sim_env) == one.release.version_id


async def test_rollback_on_failure_refused_across_migration(engine, sim_env):
    await _deploy(engine, inline_app(sim_env))
    sim_env.sim.set_worker_health("shop-staging", "failing")
    two = await _deploy(engine, inline_app(sim_env, classes=("AppContainer", "Counter")))
    assert two.status == "failed"
    assert two.error.code == "DEPLOY_007" and "migration" in two.error.message


async def test_subscribers_get_events_and_slow_ones_do_not_block(engine, sim_env):
    fast, slow = [], []

    async def on_fast(event):
        fast.append(event)

    async def on_slow(event):
        await asyncio.sleep(10)
        slow.append(event)

    unsubscribe = engine.subscribe(on_fast)
    engine.subscribe(on_slow)
    d = await _deploy(engine, inline_app(sim_env))
    assert d.status == "completed"
    await asyncio.sleep(0.05)
    kinds = {e.kind for e in fast}
    assert kinds == {"status", "step", "log"}
    assert [e.deployment.status for e in fast if e.kind == "status"][-1] == "completed"
    assert not slow
    unsubscribe()


async def test_queued_deployment_waits_while_locked(engine, sim_env):
    sim_env.sim.set_latency(0.2, "GET", "/accounts/*/workers/subdomain")
    first = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                        DeployOptions())
    second = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                         DeployOptions())
    await engine.lock("shop", "staging", actor="ops", reason="incident")
    assert (await wait_final(engine, first.id)).status == "completed"  # the running one finishes
    await asyncio.sleep(0.3)
    assert (await engine.get(second.id)).status == "queued"  # the queued one waits for /unlock
    with pytest.raises(FlareshipError) as info:
        await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)), DeployOptions())
    assert info.value.code == "DEPLOY_009"
    await engine.unlock("shop", "staging", actor="ops")
    assert (await wait_final(engine, second.id)).status == "completed"


async def test_verify_token_scopes(engine, sim_env):
    from tests.engine.harness import TOKEN

    result = await engine.verify_token(TOKEN, ["Account:Workers Scripts:Edit"])
    assert result["valid"] and "Account:Containers:Edit" in result["scopes"]
    assert result["accounts"][0]["id"] == ACCOUNT_ID
    with pytest.raises(FlareshipError) as info:
        await engine.verify_token(TOKEN, ["Zone:Zone Settings:Edit"])
    assert info.value.code == "AUTH_004" and "Zone:Zone Settings:Edit" in info.value.message
    with pytest.raises(FlareshipError) as info:
        await engine.verify_token("not-a-real-token-123456", [])
    assert info.value.code == "AUTH_003" and info.value.status == 401


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_no_log_line_is_later_than_the_end(sim_env, database):
    """A clock that moves 5 ms on every reading: the closing line still carries the end time."""
    ticks = {"n": 0}
    start = datetime.now(UTC)

    def clock():
        ticks["n"] += 1
        return start + timedelta(milliseconds=5 * ticks["n"])

    engine, clients = make_engine(sim_env.settings(database.url), database, clock=clock)
    try:
        await engine.start()
        deployed = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.deploy(deployed.id, DeployOptions())
        cancelled = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.cancel(cancelled.id)
        for d in (deployed, cancelled):
            done = await wait_final(engine, d.id)
            lines = await engine.logs(d.id)
            assert done.status in ("completed", "cancelled") and done.ended_at is not None
            assert max(line.timestamp for line in lines) <= done.ended_at, (done.status, lines[-1])
    finally:
        await engine.stop()
        await clients.aclose()


async def test_a_dead_holders_lease_on_an_ended_deployment_is_dropped(sim_env, database):
    """The holder died between the deployment's end and the lease's release: nobody resumes an
    ended deployment, so the lease is dropped once expired (not before: the holder may be alive)."""
    offset = {"value": timedelta(0)}

    def clock():
        return datetime.now(UTC) + offset["value"]

    engine, clients = make_engine(sim_env.settings(database.url), database, clock=clock, lease_seconds=30)
    try:
        await engine.start()
        d = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        await engine.deploy(d.id, DeployOptions())
        assert (await wait_final(engine, d.id)).status == "completed"
        assert await engine.store.acquire_lease("shop", "staging", "dead-process", d.id, clock(),
                                                timedelta(seconds=30))
        engine.scheduler.wake()
        await asyncio.sleep(0.3)
        assert (await engine.store.get_lease("shop", "staging")).holder == "dead-process"
        offset["value"] = timedelta(seconds=61)  # expired, and a lease period since the last sweep
        for _ in range(100):
            engine.scheduler.wake()
            if await engine.store.get_lease("shop", "staging") is None:
                break
            await asyncio.sleep(0.05)
        assert await engine.store.get_lease("shop", "staging") is None
    finally:
        await engine.stop()
        await clients.aclose()
