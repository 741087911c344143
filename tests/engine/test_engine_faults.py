"""Fault matrix: each Cloudflare call of a deployment x {429, 500, timeout, reset, lost answer}.

Every case ends in success or a clean failure (a catalogue code on the failed step), and no
Cloudflare object is ever created twice.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.errors import CATALOGUE, FlareshipError
from tests.engine.harness import inline_app, make_engine, wait_final

pytestmark = [pytest.mark.parametrize("database_backend", ["sqlite"]), pytest.mark.slow]

CALLS = [
    ("GET", "/user/tokens/verify"),
    ("GET", "/accounts/*/workers/scripts"),
    ("POST", "/accounts/*/containers/registries/*/credentials"),
    ("GET", "/accounts/*/workers/services/*"),
    ("PUT", "/accounts/*/workers/scripts/*"),
    ("GET", "/accounts/*/workers/scripts/*/versions/*"),
    ("POST", "/accounts/*/containers/applications"),
    ("GET", "/accounts/*/workers/durable_objects/namespaces"),
    ("POST", "/accounts/*/workers/scripts/*/subdomain"),
]
FAULTS = {
    "429": {"status": 429, "retry_after": 1},
    "500": {"status": 500},
    "timeout": {"delay": 1.0},
    "reset": {"reset": True},
    "lost-answer": {"status": 502, "after": True},
}


async def _fast_sleep(seconds: float) -> None:
    await asyncio.sleep(min(seconds, 0.01))


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("method,path", CALLS)
async def test_fault_ends_cleanly_without_duplicates(sim_env, database, method, path, fault):
    sim = sim_env.sim
    sim.validate_requests = False
    engine, clients = make_engine(sim_env.settings(database.url), database, timeout=0.4, sleep=_fast_sleep)
    await engine.start()
    try:
        injected = sim.inject_fault(method, path, times=1, **FAULTS[fault])
        try:
            d = await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
        except FlareshipError as exc:  # pre-flight met the fault: a clean refusal
            assert exc.code in CATALOGUE and injected.hits == 1
            return
        await engine.deploy(d.id, DeployOptions(rollback_on_failure=False))
        d = await wait_final(engine, d.id, timeout=30)
        assert injected.hits == 1  # the call was made and the fault hit it
        if d.status != "completed":
            assert d.status == "failed"
            assert d.error.code in CATALOGUE and d.error.step
            failed = [s for s in d.steps if s.status == "failed"]
            assert len(failed) == 1 and failed[0].error_code == d.error.code
        assert sim.creates["application"] <= 1
        assert sim.creates["namespace"] <= 1
        assert sim.creates["subdomain"] <= 1
        assert sim.creates["script"] <= 1
    finally:
        await engine.stop()
        await clients.aclose()


async def test_every_case_above_can_succeed_after_a_retry(sim_env, database):
    """A transient fault that made a deployment fail is gone on retry, which then completes."""
    sim = sim_env.sim
    engine, clients = make_engine(sim_env.settings(database.url), database, timeout=0.4, sleep=_fast_sleep)
    await engine.start()
    try:
        sim.inject_fault("POST", "/accounts/*/containers/applications", status=500, times=10)
        d = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                        DeployOptions(rollback_on_failure=False))
        d = await wait_final(engine, d.id)
        assert d.status == "failed" and d.error.code == "DEPLOY_004"
        sim.faults.clear()
        await engine.retry(d.id)
        d = await wait_final(engine, d.id)
        assert d.status == "completed", d.error
        assert sim.creates["application"] == 1
    finally:
        await engine.stop()
        await clients.aclose()
