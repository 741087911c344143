"""The deployment endpoints end to end: real app, real engine, simulated Cloudflare."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from bot.services import SERVICES
from tests.api.conftest import app_config, wait_final
from tests.engine.harness import ACCOUNT_ID, TOKEN


async def test_validate_prepare_deploy_status_rollback(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("read", "deploy:staging")

    resp, body = await api.call("POST", "/deploy/validate", token=token, json={
        "environment": "staging", "credentials": {"cloudflareApiToken": TOKEN, "accountId": ACCOUNT_ID}})
    assert resp.status == 200, body
    data = body["data"]
    assert data["valid"] is True and data["accountInfo"]["id"] == ACCOUNT_ID
    assert data["permissions"] == {"workers": True, "containers": True, "durableObjects": True}
    assert data["accountInfo"]["type"] in ("free", "pro", "business", "enterprise")
    assert body["metadata"]["version"] == "1.0.0"
    # Without credentials, the server's own configured ones for the environment are checked.
    resp, body = await api.call("POST", "/deploy/validate", token=token, json={"environment": "staging"})
    assert resp.status == 200 and body["data"]["accountInfo"]["id"] == ACCOUNT_ID

    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 200, body
    prepared = body["data"]
    assert prepared["prepared"] is True and prepared["deploymentId"].startswith("dep_")
    assert prepared["checks"] == {"resources": "pass", "quotas": "pass", "dependencies": "pass"}
    assert prepared["estimatedCost"]["currency"] == "USD" and prepared["estimatedCost"]["monthly"] >= 0
    dep_id = prepared["deploymentId"]

    resp, body = await api.call("GET", f"/deploy/{dep_id}/status", token=token)
    assert body["data"]["status"] == "initiated" and body["data"]["progress"] == {"current": 0, "total": 8, "percentage": 0.0}

    resp, body = await api.call("POST", "/deploy", token=token, json={
        "deploymentId": dep_id, "environment": "staging",
        "options": {"dryRun": False, "rollbackOnFailure": True, "maxRetries": 3}})
    assert resp.status == 200, body
    started = body["data"]
    assert started["deploymentId"] == dep_id
    assert started["status"] in ("initiated", "in_progress", "completed")
    assert started["steps"][0]["name"] == "Validating configuration" and len(started["steps"]) == 8
    assert set(started["rollbackInfo"]) == {"available", "previousVersion"}

    # Starting it again while it runs is idempotent (the same deployment comes back).
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "staging"})
    assert resp.status in (200, 409) and (resp.status == 409 or body["data"]["deploymentId"] == dep_id)

    final = await wait_final(api, token, dep_id)
    # A finished deployment cannot be started again: 409.
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "staging"})
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_010"
    assert final["status"] == "completed", final
    assert final["progress"] == {"current": 8, "total": 8, "percentage": 100.0}
    assert [s["name"] for s in final["completedSteps"]][:3] == [
        "Validating configuration", "Authenticating with Cloudflare", "Checking resources and quotas"]
    assert all(s["duration"] is not None and s["duration"] >= 0 for s in final["completedSteps"] if s["status"] == "completed")
    assert final["currentStep"] is None and final["metadata"]["environment"] == "staging"
    assert final["metadata"]["estimatedCompletion"]

    # A second deployment of the same app: rollbackInfo names the first release; its ETA uses history.
    resp, body = await api.call("POST", "/deploy", token=token,
                                json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 200, body
    second_id = body["data"]["deploymentId"]
    assert body["data"]["rollbackInfo"]["available"] is True
    first_release = body["data"]["rollbackInfo"]["previousVersion"]
    assert first_release and first_release.startswith("rel_")
    resp, body = await api.call("GET", f"/deploy/{second_id}/status", token=token)
    if body["data"]["status"] not in ("completed", "failed"):
        assert body["data"]["metadata"]["estimatedCompletion"]
    second = await wait_final(api, token, second_id)
    assert second["status"] == "completed"

    # Retry is only for failed deployments.
    resp, body = await api.call("POST", f"/deploy/{second_id}/retry", token=token, json={})
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_010"

    # Roll the second deployment back to the first release.
    resp, body = await api.call("POST", f"/deploy/{second_id}/rollback", token=token,
                                json={"reason": "bad release"})
    assert resp.status == 200, body
    rollback = body["data"]
    assert rollback["rollbackId"].startswith("dep_") and rollback["rollbackId"] != second_id
    assert rollback["targetVersion"] == first_release
    assert rollback["estimatedTime"] > 0 and rollback["status"] in ("initiated", "in_progress", "completed")
    done = await wait_final(api, token, rollback["rollbackId"])
    assert done["status"] == "completed", done

    resp, body = await api.call("GET", "/deployments?environment=staging&limit=2", token=token)
    assert resp.status == 200
    page = body["data"]
    assert [d["deploymentId"] for d in page["deployments"]] == [rollback["rollbackId"], second_id]
    assert page["nextCursor"] == second_id
    resp, body = await api.call("GET", f"/deployments?environment=staging&limit=2&before={second_id}", token=token)
    assert [d["deploymentId"] for d in body["data"]["deployments"]] == [dep_id] and body["data"]["nextCursor"] is None

    resp, body = await api.call("GET", "/metrics/deployments?environment=staging", token=token)
    assert body["data"]["byStatus"]["completed"] == 3 and body["data"]["successRate"] == 1.0
    assert body["data"]["steps"][0]["count"] >= 3

    # The engine's events feed Prometheus: deployments by environment/outcome and step durations.
    for _ in range(100):
        text = await (await api.client.get("/metrics")).text()
        if 'flareship_deployments_total{environment="staging",outcome="completed"} 3.0' in text:
            break
        await asyncio.sleep(0.02)
    assert 'flareship_deployments_total{environment="staging",outcome="completed"} 3.0' in text
    assert 'flareship_step_duration_seconds_count{outcome="completed",step="Health check"}' in text
    assert "flareship_cloudflare_requests_total{token=" in text
    assert "flareship_cloudflare_budget_headroom_ratio{token=" in text


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_unknown_deployment_ids_are_404(deploy_api):
    token = await deploy_api.token("admin")
    for method, path in (("GET", "/deploy/dep_unknown/status"), ("GET", "/deploy/dep_unknown/logs"),
                         ("POST", "/deploy/dep_unknown/rollback"), ("POST", "/deploy/dep_unknown/retry"),
                         ("POST", "/deploy/dep_unknown/cancel")):
        resp, body = await deploy_api.call(method, path, token=token)
        assert resp.status == 404 and body["error"]["code"] == "SYS_005", (path, body)
    resp, body = await deploy_api.call("POST", "/deploy", token=token,
                                       json={"deploymentId": "dep_unknown", "environment": "staging"})
    assert resp.status == 404 and body["error"]["code"] == "SYS_005"


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_validate_errors(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging")
    env.sim.add_token("sim-read-only-token-0123456789ab", account_ids=[ACCOUNT_ID], permissions=["account_settings:read"])
    cases = [
        ("wrong-token-0123456789abcdef", ACCOUNT_ID, 401, "AUTH_003"),
        (TOKEN, "not-an-account-id", 422, "SYS_006"),
        ("sim-read-only-token-0123456789ab", ACCOUNT_ID, 403, "AUTH_004"),
    ]
    for cf_token, account, status, code in cases:
        resp, body = await api.call("POST", "/deploy/validate", token=token, json={
            "environment": "staging", "credentials": {"cloudflareApiToken": cf_token, "accountId": account}})
        assert resp.status == status and body["error"]["code"] == code, body
        assert cf_token not in await resp.text()


async def _override(api, environment: str, token: str, account: str) -> None:
    settings = api.app[SERVICES].settings
    settings.environment_overrides[environment] = {"CLOUDFLARE_API_TOKEN": token, "CLOUDFLARE_ACCOUNT_ID": account}


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_prepare_errors_402_409_424(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging", "deploy:trial")
    # 402: containers on a free account.
    free_account = "f" * 32
    env.sim.add_account(free_account, name="Free", plan="free")
    env.sim.add_token("sim-free-token-0123456789abcdef", account_ids=[free_account])
    await _override(api, "trial", "sim-free-token-0123456789abcdef", free_account)
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={"environment": "trial", "config": app_config(env)})
    assert resp.status == 402 and body["error"]["code"] == "DEPLOY_002", body
    # 424: a Durable Object class the generated Worker does not export.
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={
        "environment": "staging", "config": app_config(env, durableObjects=["AppContainer", "Missing"])})
    assert resp.status == 424 and body["error"]["code"] == "DEPLOY_011", body
    # 409: the environment is locked.
    await api.app[SERVICES].engine.lock("shop", "staging", actor="alice", reason="release freeze")
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_009", body
    assert "alice" in body["error"]["message"]


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_deploy_errors_400_401_403_503(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging", "deploy:broken")
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={"environment": "staging", "config": app_config(env)})
    dep_id = body["data"]["deploymentId"]
    # 400: prepared for staging, asked for another environment.
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "broken"})
    assert resp.status == 400 and body["error"]["code"] == "DEPLOY_001", body
    # 403: no scope for production.
    resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "production"})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    # 401: the environment's Cloudflare token is not accepted.
    await _override(api, "broken", "revoked-token-0123456789abcdef", ACCOUNT_ID)
    resp, body = await api.call("POST", "/deploy", token=token, json={"environment": "broken", "config": app_config(env)})
    assert resp.status == 401 and body["error"]["code"] in ("AUTH_003", "AUTH_005"), body
    # 503: Cloudflare is down.
    env.sim.inject_fault("*", "*", status=503, times=None)
    resp, body = await api.call("POST", "/deploy", token=token, json={"environment": "staging", "config": app_config(env, name="other")})
    assert resp.status == 503 and body["error"]["code"] == "SYS_002", body
    env.sim.faults.clear()


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_internal_error_is_500_without_internals(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging")
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={"environment": "staging", "config": app_config(env)})
    dep_id = body["data"]["deploymentId"]
    database = api.app[SERVICES].database
    import sqlalchemy as sa

    async with database.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE deployments RENAME TO deployments_away"))
    try:
        resp, body = await api.call("POST", "/deploy", token=token, json={"deploymentId": dep_id, "environment": "staging"})
        assert resp.status == 500 and body["error"]["code"] == "SYS_001"
        assert "deployments" not in body["error"]["message"] and "Traceback" not in await resp.text()
    finally:
        async with database.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE deployments_away RENAME TO deployments"))


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_cancel_a_prepared_deployment(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging", "read")
    resp, body = await api.call("POST", "/deploy/prepare", token=token, json={"environment": "staging", "config": app_config(env)})
    dep_id = body["data"]["deploymentId"]
    resp, body = await api.call("POST", f"/deploy/{dep_id}/cancel", token=token)
    assert resp.status == 200 and body["data"] == {"deploymentId": dep_id, "status": "cancelled"}
    resp, body = await api.call("POST", f"/deploy/{dep_id}/cancel", token=token)
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_010"


WORKER = """
import { DurableObject } from "cloudflare:workers";
export class AppContainer extends DurableObject {}
export default { async fetch() { return new Response("ok"); } };
"""
CONFIG = """
app:
  name: widgets
  main: dist/index.js
  compatibility_date: "2025-09-01"
  container: {{image: "{image}", class_name: AppContainer, instance_type: basic, max_instances: 2}}
  durable_objects: [AppContainer]
environments:
  staging:
    health_check: {{path: /, timeout_seconds: 5}}
"""


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_deploy_a_repository_by_ref(github_sim, sim_env, make_api):
    """REST deploys of a repository's code: installation and SHA resolved from the ref."""
    from tests.api.conftest import cloudflare_settings
    from tests.plugins.github_sim import REPOSITORY, seed_repo

    sha = seed_repo(github_sim, files={".github/flareship.yml": CONFIG.format(image=sim_env.image()),
                                       "dist/index.js": WORKER})
    api = await make_api(**cloudflare_settings(sim_env), github_api_url=github_sim.url,
                         github_app_id=str(github_sim.app_id), github_private_key=SecretStr(github_sim.app_private_key),
                         github_write_interval=0)
    token = await api.token("read", "deploy:staging")
    resp, body = await api.call("POST", "/deploy", token=token,
                                json={"environment": "staging", "repository": REPOSITORY})
    assert resp.status == 200, body
    final = await wait_final(api, token, body["data"]["deploymentId"])
    assert final["status"] == "completed", final
    resp, body = await api.call("GET", "/deployments?repository=" + REPOSITORY, token=token)
    listed = body["data"]["deployments"][0]
    assert listed["sha"] == sha and listed["ref"] == "main" and listed["appName"] == "widgets"

    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "repository": REPOSITORY, "ref": "no-such-branch"})
    assert resp.status == 404 and body["error"]["details"]["field"] == "ref", body
    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "repository": "acme/not-installed"})
    assert resp.status == 404 and body["error"]["details"]["field"] == "repository", body


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_retry_a_failed_deployment_and_rollback_with_nothing_before(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("read", "deploy:staging")
    env.sim.inject_fault("PUT", "/accounts/*/workers/scripts/*", error_code=10021, status=400, times=None)
    resp, body = await api.call("POST", "/deploy", token=token, json={
        "environment": "staging", "config": app_config(env),
        "options": {"rollbackOnFailure": False, "maxRetries": 2}})
    assert resp.status == 200, body
    dep_id = body["data"]["deploymentId"]
    failed = await wait_final(api, token, dep_id)
    assert failed["status"] == "failed"
    # New Durable Object classes upload the Worker with their migration, so that step fails.
    step = failed["error"]["step"]
    assert step in ("Deploying Durable Objects", "Uploading Worker version")
    assert failed["error"]["code"] == {"Deploying Durable Objects": "DEPLOY_004", "Uploading Worker version": "DEPLOY_008"}[step]
    assert failed["currentStep"]["name"] == step and failed["currentStep"]["status"] == "failed"
    assert failed["progress"]["current"] == len(failed["completedSteps"])
    assert failed["currentStep"]["logs"]  # the failing step's recent lines

    resp, body = await api.call("POST", f"/deploy/{dep_id}/retry", token=token, json={"stepName": "No such step"})
    assert resp.status == 422 and body["error"]["details"]["field"] == "stepName"
    env.sim.faults.clear()
    resp, body = await api.call("POST", f"/deploy/{dep_id}/retry", token=token, json={})
    assert resp.status == 200, body
    assert body["data"]["retryId"] == dep_id and body["data"]["attempt"] == 2 and body["data"]["maxAttempts"] == 2
    assert body["data"]["status"] in ("initiated", "in_progress", "completed")
    done = await wait_final(api, token, dep_id)
    assert done["status"] == "completed" and done["error"] is None

    # Rolling back the environment's first release: there is nothing before it.
    resp, body = await api.call("POST", f"/deploy/{dep_id}/rollback", token=token)
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_007", body
    assert "nothing to roll back to" in body["error"]["message"]


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_one_at_a_time_per_environment(deploy_api):
    """A second deploy queues behind the running one (FIFO, with its position); prepare refuses
    while one is in progress (409), and a locked environment refuses deploys (409)."""
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("read", "deploy:staging")
    env.sim.set_latency(2.0, "GET", "/accounts/*/workers/subdomain")
    first = (await api.call("POST", "/deploy", token=token,
                            json={"environment": "staging", "config": app_config(env)}))[1]["data"]
    for _ in range(1000):
        resp, body = await api.call("GET", f"/deploy/{first['deploymentId']}/status", token=token)
        if body["data"]["status"] == "in_progress":
            break
        await asyncio.sleep(0.01)
    assert body["data"]["status"] == "in_progress"
    resp, body = await api.call("POST", "/deploy/prepare", token=token,
                                json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_009", body
    assert first["deploymentId"] in body["error"]["message"]
    resp, body = await api.call("POST", "/deploy", token=token, json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 200, body
    second = body["data"]
    assert second["status"] == "initiated" and second["queuePosition"] == 1
    resp, body = await api.call("GET", f"/deploy/{second['deploymentId']}/status", token=token)
    assert body["data"]["status"] == "initiated" and body["data"]["queuePosition"] == 1
    env.sim.faults.clear()
    assert (await wait_final(api, token, second["deploymentId"]))["status"] == "completed"

    await api.app[SERVICES].engine.lock("shop", "staging", actor="alice", reason="freeze")
    resp, body = await api.call("POST", "/deploy", token=token, json={"environment": "staging", "config": app_config(env)})
    assert resp.status == 409 and body["error"]["code"] == "DEPLOY_009" and "alice" in body["error"]["message"]
