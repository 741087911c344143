"""Each step's failure against the simulator, and pre-flight's 402 / 409 / 424."""

from __future__ import annotations

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.errors import FlareshipError
from tests.engine.harness import ACCOUNT_ID, TOKEN, inline_app

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"])

NO_ROLLBACK = DeployOptions(rollback_on_failure=False)


def _break(sim_env, step: str) -> None:
    sim = sim_env.sim
    if step == "Authenticating with Cloudflare":
        sim.tokens[TOKEN].status = "disabled"
    elif step == "Checking resources and quotas":
        sim.accounts[ACCOUNT_ID].plan = "free"
    elif step == "Uploading container":
        # the image vanished from its source registry after pre-flight resolved it
        source = sim_env.source_registry.state
        source.tags["acme/app"].clear()
        for digest in list(source.blobs):
            source.blobs.pop(digest)
    elif step == "Deploying Durable Objects":
        sim.inject_fault("POST", "/accounts/*/containers/applications", error_code=1101, status=400, times=None)
    elif step == "Uploading Worker version":
        sim.inject_fault("PUT", "/accounts/*/workers/scripts/*", error_code=10021, status=400, times=None)
    elif step == "Configuring routes and DNS":
        sim.inject_fault("POST", "/accounts/*/workers/scripts/*/subdomain", status=503, times=None)
    elif step == "Health check":
        sim.set_worker_health("shop-staging", "failing")


@pytest.mark.parametrize("step,code", [
    ("Authenticating with Cloudflare", "AUTH_003"),
    ("Checking resources and quotas", "DEPLOY_002"),
    ("Uploading container", "DEPLOY_003"),
    ("Deploying Durable Objects", "DEPLOY_004"),
    ("Uploading Worker version", "DEPLOY_008"),
    ("Configuring routes and DNS", "DEPLOY_005"),
    ("Health check", "DEPLOY_006"),
])
async def test_step_failure_maps_to_catalogue(engine, sim_env, step, code):
    from tests.engine.harness import wait_final

    spec = inline_app(sim_env)
    if step == "Uploading Worker version":  # the first upload of a DO app happens with its migration (step 5)
        spec = inline_app(sim_env, image=False, classes=(), module="export default {}")
    d = await engine.prepare(PrepareRequest(environment="staging", app=spec))
    _break(sim_env, step)
    await engine.deploy(d.id, NO_ROLLBACK)
    d = await wait_final(engine, d.id)
    assert d.status == "failed"
    assert d.error.code == code, d.error
    assert d.error.step == step
    assert d.error.correlation_id == d.correlation_id
    failed = [s for s in d.steps if s.status == "failed"]
    assert [s.name for s in failed] == [step]
    assert failed[0].error_code == code
    index = [s.name for s in d.steps].index(step)
    assert all(s.status == "pending" for s in d.steps[index + 1:])
    assert any(line.level == "error" and code in line.message for line in await engine.logs(d.id))


async def test_validate_step_refuses_unexported_class(engine, sim_env):
    spec = inline_app(sim_env, classes=("AppContainer", "Missing"))
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=spec))
    assert info.value.code == "DEPLOY_011" and info.value.status == 424
    assert "Missing" in info.value.message
    assert info.value.details["checks"]["dependencies"] == "fail"


async def test_preflight_dependencies_424(engine, sim_env):
    future = inline_app(sim_env, compatibility_date="2999-01-01")
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=future))
    assert info.value.code == "DEPLOY_011" and "future" in info.value.message
    missing_image = inline_app(sim_env, image=sim_env.image("acme/app", "nope"))
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=missing_image))
    assert info.value.code == "DEPLOY_011" and "digest" in info.value.message
    # the seed shape: any class besides the container's is not exported by the generated Worker
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", config={
            "appName": "gen", "containerImage": sim_env.image(), "durableObjects": ["AppContainer", "Counter"]}))
    assert info.value.status == 424 and "Counter" in info.value.message


async def test_preflight_quota_402(engine, sim_env):
    sim_env.sim.accounts[ACCOUNT_ID].plan = "free"
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env)))
    assert info.value.code == "DEPLOY_002" and info.value.status == 402
    assert "Paid" in info.value.message
    sim_env.sim.accounts[ACCOUNT_ID].plan = "paid"
    big = inline_app(sim_env)
    big.container.instance_type = "standard-4"
    big.container.max_instances = 20  # 80 vCPU > the account's 40
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=big))
    assert info.value.code == "DEPLOY_002"


async def test_preflight_conflicts_409(engine, sim_env):
    from tests.engine.harness import wait_final

    first = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env),
                                                       repository="acme/shop"), DeployOptions())
    await wait_final(engine, first.id)
    # another repository deploying the same script name
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env), repository="evil/shop"))
    assert info.value.code == "DEPLOY_012" and info.value.status == 409
    # a deployment in progress for the same target
    sim_env.sim.set_latency(0.3, "GET", "/accounts/*/workers/subdomain")
    running = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env),
                                                         repository="acme/shop"), DeployOptions())
    for _ in range(200):
        if (await engine.get(running.id)).status == "in_progress":
            break
        import asyncio
        await asyncio.sleep(0.01)
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env), repository="acme/shop"))
    assert info.value.code == "DEPLOY_009" and info.value.status == 409
    await wait_final(engine, running.id)
    # a manual lock names who and why
    await engine.lock("acme/shop", "staging", actor="bob", reason="release freeze")
    with pytest.raises(FlareshipError) as info:
        await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env), repository="acme/shop"))
    assert info.value.code == "DEPLOY_009" and "bob" in info.value.message and "freeze" in info.value.message
    assert (await engine.get_lock("acme/shop", "staging"))["actor"] == "bob"
    assert await engine.unlock("acme/shop", "staging", actor="bob")
    await engine.prepare(PrepareRequest(environment="staging", app=inline_app(sim_env), repository="acme/shop"))


async def test_validate_credentials(engine, sim_env):
    from bot.settings import CloudflareCredentials

    ok = await engine.validate("staging", CloudflareCredentials(TOKEN, ACCOUNT_ID))
    assert ok["valid"] and ok["permissions"] == {"workers": True, "containers": True, "durableObjects": True}
    assert ok["accountInfo"]["id"] == ACCOUNT_ID and ok["workersPlan"] == "paid"
    with pytest.raises(FlareshipError) as info:
        await engine.validate("staging", CloudflareCredentials("wrong-token-value-123", ACCOUNT_ID))
    assert info.value.code == "AUTH_003" and info.value.status == 401
    with pytest.raises(FlareshipError) as info:
        await engine.validate("staging", CloudflareCredentials(TOKEN, "NOT-HEX"))
    assert info.value.status == 422
    sim_env.sim.add_token("read-only-token-abcdef", account_ids=[ACCOUNT_ID],
                          permissions={"account_settings:read", "containers:read"})
    with pytest.raises(FlareshipError) as info:
        await engine.validate("staging", CloudflareCredentials("read-only-token-abcdef", ACCOUNT_ID))
    assert info.value.code == "AUTH_004" and info.value.status == 403


async def test_token_revoked_mid_deployment_is_auth_005(engine, sim_env):
    from tests.engine.harness import wait_final

    sim_env.sim.set_latency(0.3, "POST", "/accounts/*/containers/registries/*/credentials")
    d = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)), NO_ROLLBACK)
    import asyncio
    for _ in range(300):
        if (await engine.get(d.id)).step("Uploading container").status == "running":
            break
        await asyncio.sleep(0.01)
    sim_env.sim.tokens[TOKEN].status = "disabled"
    d = await wait_final(engine, d.id)
    assert d.status == "failed" and d.error.code == "AUTH_005"
    assert d.error.step in ("Uploading container", "Deploying Durable Objects")
