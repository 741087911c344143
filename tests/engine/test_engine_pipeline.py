"""The engine end to end against the simulated Cloudflare (SQLite and PostgreSQL)."""

from __future__ import annotations

from bot.engine import DeployOptions, PrepareRequest
from tests.engine.harness import ACCOUNT_ID, inline_app, wait_final


async def test_full_deploy_then_redeploy(engine, sim_env):
    req = PrepareRequest(environment="staging", app=inline_app(sim_env), actor="alice")
    prepared = await engine.prepare(req)
    assert prepared.status == "initiated"
    assert prepared.checks == {"resources": "pass", "quotas": "pass", "dependencies": "pass"}
    assert prepared.estimated_cost["currency"] == "USD"
    queued = await engine.deploy(prepared.id, DeployOptions())
    assert queued.status in ("queued", "in_progress", "completed")
    done = await wait_final(engine, prepared.id)
    assert done.status == "completed", done.error
    assert [s.status for s in done.steps] == ["completed"] * 8
    assert done.urls["staging"] == sim_env.workers_url_template.format(
        script="shop-staging", subdomain=sim_env.sim.accounts[ACCOUNT_ID].subdomain)
    release = done.release
    assert release.version_id and release.image.startswith(f"127.0.0.1:{sim_env.port}/{ACCOUNT_ID}/app@sha256:")
    assert release.image_digest == sim_env.images["acme/app:1"]
    assert release.migration_tag == "v1"
    assert (await engine.live_release("shop", "staging")).id == release.id
    logs = await engine.logs(done.id)
    assert [line.id for line in logs] == sorted(line.id for line in logs) and len(logs) > 8
    assert sim_env.sim.creates["application"] == 1

    # Same app again: no new migration, no second application, a new version.
    second = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                         DeployOptions())
    second = await wait_final(engine, second.id)
    assert second.status == "completed", second.error
    assert second.release.migration_tag == "v1"
    assert second.release.version_id != release.version_id
    assert second.previous_release.id == release.id
    assert sim_env.sim.creates["application"] == 1


async def test_worker_only_app_skips_container(engine, sim_env):
    spec = inline_app(sim_env, name="plain", environment="production", image=False, classes=(),
                      module="export default {}")
    d = await engine.request_deploy(PrepareRequest(environment="production", app=spec), DeployOptions())
    d = await wait_final(engine, d.id)
    assert d.status == "completed", d.error
    statuses = {s.name: s.status for s in d.steps}
    assert statuses["Uploading container"] == "skipped"
    assert statuses["Deploying Durable Objects"] == "skipped"
    assert d.script_name == "plain"


async def test_seed_config_generated_worker(engine, sim_env):
    req = PrepareRequest(environment="staging", config={"appName": "seeded", "containerImage": sim_env.image(),
                                                        "environmentVars": {"A": "1"}})
    d = await engine.request_deploy(req, DeployOptions())
    d = await wait_final(engine, d.id)
    assert d.status == "completed", d.error
    script = sim_env.sim.script(ACCOUNT_ID, "seeded-staging")
    assert script is not None


async def test_dry_run_changes_nothing(engine, sim_env):
    d = await engine.request_deploy(PrepareRequest(environment="staging", app=inline_app(sim_env)),
                                    DeployOptions(dry_run=True))
    d = await wait_final(engine, d.id)
    assert d.status == "completed", d.error
    assert d.release is None
    assert sim_env.sim.script(ACCOUNT_ID, "shop-staging") is None
    assert sim_env.sim.creates["application"] == 0
    assert await engine.live_release("shop", "staging") is None
