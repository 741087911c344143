"""Fault matrix: every Cloudflare call the engine makes x {429, 5xx, timeout, reset}.

Each fault fires once, either before the simulator does the work or after it (the answer is
lost). The call must then succeed (retried when safe, reconciled by re-reading when not) or fail
with a typed error that maps onto the catalogue; "retrying the step" (calling again) succeeds;
and the object the call creates exists exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.cloudflare import CloudflareError, WorkerModule, durable_object_binding, sqlite_migration
from bot.engine.failures import catalogue_error
from bot.errors import FlareshipError
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID as ACC
from tests.plugins.cloudflare_sim import CF_TOKEN, make_client

MAIN = b"export class AppContainer {}\nexport default { fetch() { return new Response('ok') } }\n"
ZONE = "aaaabbbbccccddddaaaabbbbccccdddd"

VARIANTS = {
    "429": dict(status=429, retry_after=2),
    "500": dict(status=500),
    "503-after": dict(status=503, after=True),
    "timeout": dict(delay=0.4),
    "timeout-after": dict(delay=0.4, after=True),
    "reset": dict(reset=True),
    "reset-after": dict(reset=True, after=True),
}


async def upload(client, script: str, *, migrate: bool = True, body: bytes = MAIN) -> dict:
    return await client.upload_worker(
        ACC, script, [WorkerModule("index.js", body)], main_module="index.js", compatibility_date="2025-09-01",
        bindings=[durable_object_binding("APP_CONTAINER", "AppContainer")],
        migrations=sqlite_migration(None, "v1", ["AppContainer"]) if migrate else None,
        containers=[{"class_name": "AppContainer"}],
    )


@dataclass
class Op:
    """One engine call: how to set it up, the request to break, how to run it, what it creates."""

    method: str
    pattern: str
    run: Callable[[Any, Any, dict], Awaitable[Any]]
    setup: Callable[[Any, Any, dict], Awaitable[Any]] | None = None
    count: Callable[[Any, dict], int] | None = None  # objects this call must leave exactly one of
    creates: bool = False  # a creating POST: not blindly retried


async def _two_versions(client, sim, ctx):
    ctx["v1"] = (await upload(client, ctx["script"]))["deployment_id"]
    ctx["v2"] = (await upload(client, ctx["script"], migrate=False, body=MAIN + b"// v2\n"))["deployment_id"]
    ctx["deployments_before"] = len(sim.script(ACC, ctx["script"]).deployments)


async def _container_setup(client, sim, ctx):
    ctx["v1"] = (await upload(client, ctx["script"]))["deployment_id"]
    ns = await client.durable_object_namespace_ids(ACC, ctx["script"], ctx["v1"])
    ctx["ns"] = ns["AppContainer"]
    ctx["image"] = f"{sim.registry_host}/{ACC}/app@sha256:" + "a" * 64


async def _container_update_setup(client, sim, ctx):
    await _container_setup(client, sim, ctx)
    await client.deploy_application(ACC, name=ctx["app"], image=ctx["image"], namespace_id=ctx["ns"], max_instances=3)
    ctx["image"] = ctx["image"][:-64] + "b" * 64


def _rollouts_to(sim, ctx) -> int:
    app_ids = {a["id"] for a in sim.applications.values() if a["name"] == ctx["app"]}
    return sum(1 for r in sim.rollouts.values()
               if r["application_id"] in app_ids and r["target_configuration"]["image"] == ctx["image"])


def _deploy_app(client, ctx):
    return client.deploy_application(ACC, name=ctx["app"], image=ctx["image"], namespace_id=ctx["ns"],
                                     max_instances=3)


OPS: dict[str, Op] = {
    "verify_token": Op("GET", "/user/tokens/verify", lambda c, s, x: c.verify_token(ACC)),
    "probe_permissions": Op("GET", "/accounts/*/workers/scripts", lambda c, s, x: c.probe_permissions(ACC)),
    "get_account": Op("GET", f"/accounts/{ACC}", lambda c, s, x: c.account_plan(ACC)),
    "script_state": Op("GET", "/accounts/*/workers/services/*", lambda c, s, x: c.script_state(ACC, x["script"])),
    "upload_with_migration": Op(
        "PUT", "/accounts/*/workers/scripts/*", lambda c, s, x: upload(c, x["script"]),
        count=lambda s, x: len(s.script(ACC, x["script"]).versions)),
    "upload_again": Op(
        "PUT", "/accounts/*/workers/scripts/*",
        lambda c, s, x: upload(c, x["script"], migrate=False, body=MAIN + b"// again\n"),
        setup=lambda c, s, x: upload(c, x["script"]),
        count=lambda s, x: len(s.script(ACC, x["script"]).versions) - 1),
    "upload_version": Op(
        "POST", "/accounts/*/workers/scripts/*/versions",
        lambda c, s, x: c.upload_version(ACC, x["script"], [WorkerModule("index.js", MAIN + b"// staged\n")],
                                         main_module="index.js", compatibility_date="2025-09-01",
                                         bindings=[durable_object_binding("APP_CONTAINER", "AppContainer")]),
        setup=lambda c, s, x: upload(c, x["script"]),
        count=lambda s, x: len(s.script(ACC, x["script"]).versions) - 1, creates=True),
    "get_version": Op(
        "GET", "/accounts/*/workers/scripts/*/versions/*", lambda c, s, x: c.get_version(ACC, x["script"], x["v1"]),
        setup=_two_versions),
    "list_deployments": Op(
        "GET", "/accounts/*/workers/scripts/*/deployments", lambda c, s, x: c.list_deployments(ACC, x["script"]),
        setup=_two_versions),
    "create_deployment": Op(
        "POST", "/accounts/*/workers/scripts/*/deployments",
        lambda c, s, x: c.create_deployment(ACC, x["script"], x["v1"]), setup=_two_versions,
        count=lambda s, x: len(s.script(ACC, x["script"]).deployments) - x["deployments_before"], creates=True),
    "rollback": Op(
        "POST", "/accounts/*/workers/scripts/*/deployments", lambda c, s, x: c.rollback(ACC, x["script"]),
        setup=_two_versions,
        count=lambda s, x: len(s.script(ACC, x["script"]).deployments) - x["deployments_before"], creates=True),
    "account_subdomain": Op("GET", "/accounts/*/workers/subdomain", lambda c, s, x: c.get_account_subdomain(ACC)),
    "enable_script_subdomain": Op(
        "POST", "/accounts/*/workers/scripts/*/subdomain",
        lambda c, s, x: c.enable_script_subdomain(ACC, x["script"]), setup=lambda c, s, x: upload(c, x["script"])),
    "do_namespaces": Op("GET", "/accounts/*/workers/durable_objects/namespaces",
                        lambda c, s, x: c.list_durable_object_namespaces(ACC)),
    "containers_me": Op("GET", "/accounts/*/containers/me", lambda c, s, x: c.containers_account(ACC)),
    "registry_credentials": Op("POST", "/accounts/*/containers/registries/*/credentials",
                               lambda c, s, x: c.registry_credentials(ACC, s.registry_host)),
    "create_application": Op(
        "POST", "/accounts/*/containers/applications", lambda c, s, x: _deploy_app(c, x), setup=_container_setup,
        count=lambda s, x: sum(1 for a in s.applications.values() if a["name"] == x["app"]), creates=True),
    "patch_application": Op(
        "PATCH", "/accounts/*/containers/applications/*", lambda c, s, x: _deploy_app(c, x),
        setup=_container_update_setup,
        count=lambda s, x: _rollouts_to(s, x)),
    "create_rollout": Op(
        "POST", "/accounts/*/containers/applications/*/rollouts", lambda c, s, x: _deploy_app(c, x),
        setup=_container_update_setup,
        count=lambda s, x: _rollouts_to(s, x),
        creates=True),
    "ensure_route": Op(
        "POST", "/zones/*/workers/routes", lambda c, s, x: c.ensure_route(ZONE, f"{x['script']}.example.com/*",
                                                                            x["script"]),
        setup=lambda c, s, x: upload(c, x["script"]),
        count=lambda s, x: sum(1 for r in s.routes.values() if r["pattern"] == f"{x['script']}.example.com/*"),
        creates=True),
    "attach_domain": Op(
        "PUT", "/accounts/*/workers/domains",
        lambda c, s, x: c.attach_domain(ACC, f"{x['script']}.example.com", x["script"], ZONE),
        setup=lambda c, s, x: upload(c, x["script"]),
        count=lambda s, x: sum(1 for d in s.domains.values() if d["hostname"] == f"{x['script']}.example.com")),
}


@pytest.fixture
async def matrix_client(cloudflare_sim, cloudflare_clock):
    cloudflare_sim.sim.add_zone(ZONE, "example.com", ACC)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.15)) as http:
        yield make_client(cloudflare_sim, http, cloudflare_clock, version_retry_delays=(0.0,) * 5)


@pytest.mark.parametrize("op_name", list(OPS))
async def test_fault_matrix(op_name, cloudflare_sim, matrix_client, cloudflare_clock):
    op = OPS[op_name]
    sim = cloudflare_sim.sim
    for n, (variant, fault) in enumerate(VARIANTS.items()):
        ctx = {"script": f"{op_name.replace('_', '-')}-{n}", "app": f"{op_name.replace('_', '-')}-{n}-app"}
        if op.setup:
            await op.setup(matrix_client, sim, ctx)
        sim.faults.clear()
        injected = sim.inject_fault(op.method, op.pattern, **fault)
        outcome = "ok"
        try:
            await op.run(matrix_client, sim, ctx)
        except CloudflareError as exc:
            outcome = "failed"
            mapped = catalogue_error(exc, "Uploading Worker version")
            assert isinstance(mapped, FlareshipError) and mapped.code
            assert CF_TOKEN not in str(exc) and CF_TOKEN not in repr(exc) and CF_TOKEN not in mapped.message
        assert injected.hits == 1, f"{op_name}/{variant}: the fault never fired"
        safe = not op.creates or variant == "429" or fault.get("after")
        if safe:
            assert outcome == "ok", f"{op_name}/{variant}: should have been retried or reconciled"
        if outcome == "failed":  # the engine retries the step
            await op.run(matrix_client, sim, ctx)
        if op.count:
            assert op.count(sim, ctx) == 1, f"{op_name}/{variant}: created {op.count(sim, ctx)} objects, not 1"
    assert sim.faults.faults and all(f.exhausted for f in sim.faults.faults)


async def test_retry_after_is_honoured_and_pauses_the_token(cloudflare_sim, cloudflare_client, cloudflare_clock):
    cloudflare_sim.sim.inject_fault("GET", "/accounts/*", status=429, retry_after=7)
    await cloudflare_client.get_account(ACC)
    assert sum(cloudflare_clock.sleeps) >= 7
    assert cloudflare_client.budget.paused_for() == 0


async def test_retry_after_above_60_gives_up(cloudflare_sim, cloudflare_client):
    from bot.cloudflare import RateLimited

    cloudflare_sim.sim.inject_fault("GET", "/accounts/*", status=429, retry_after=300)
    with pytest.raises(RateLimited) as err:
        await cloudflare_client.get_account(ACC)
    assert err.value.retry_after == 300
    mapped = catalogue_error(err.value, "Checking resources and quotas")
    assert mapped.code == "SYS_003" and mapped.retry_after == 300
    assert cloudflare_sim.sim.count_requests("GET", f"/accounts/{ACC}") == 1
    assert cloudflare_client.budget.paused_for() > 200  # the whole token waits, not just this call


async def test_persistent_5xx_ends_in_server_error_after_cap(cloudflare_sim, cloudflare_client):
    from bot.cloudflare import ServerError

    cloudflare_sim.sim.inject_fault("GET", "/accounts/*/workers/scripts", status=503, times=None)
    with pytest.raises(ServerError) as err:
        await cloudflare_client.list_scripts(ACC)
    assert catalogue_error(err.value, "Uploading Worker version").code == "SYS_002"
    assert cloudflare_sim.sim.count_requests("GET", "/workers/scripts") == 3


async def test_injected_error_code(cloudflare_sim, cloudflare_client):
    from bot.cloudflare import PermissionDenied

    cloudflare_sim.sim.inject_fault("GET", "/accounts/*/containers/me", error_code=10000)
    report = await cloudflare_client.probe_permissions(ACC)
    assert report.missing == {"containers": "Account:Containers:Edit"}
    with pytest.raises(PermissionDenied):
        cloudflare_sim.sim.inject_fault("GET", "/accounts/*/containers/me", error_code=10000)
        await cloudflare_client.containers_account(ACC)


async def test_latency_global_and_per_endpoint(cloudflare_sim, cloudflare_client):
    import time

    cloudflare_sim.sim.set_latency(0.05)
    cloudflare_sim.sim.set_latency(0.6, "GET", "/accounts/*/containers/me")
    start = time.perf_counter()
    await cloudflare_client.get_account(ACC)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    await cloudflare_client.containers_account(ACC)
    slow = time.perf_counter() - start
    assert 0.05 <= fast < 0.6 <= slow  # wide apart, so a loaded machine cannot blur them


async def test_budget_keeps_the_token_under_cloudflares_limit(cloudflare_sim, cloudflare_http):
    """The sim enforces a (scaled-down) per-token limit and blocks the token once it is crossed;
    a client whose budget matches never gets there - it fails with SYS_003 itself instead."""
    from bot.cloudflare import BudgetExhausted, RateLimited, RequestBudget
    from tests.plugins.cloudflare_sim import FakeClock

    sim = cloudflare_sim.sim
    sim.rate_limit, sim.rate_window = 12, 300.0
    clock = FakeClock()
    budget = RequestBudget(limit=12, window=300, clock=clock, sleep=clock.sleep, max_wait=30)
    client = make_client(cloudflare_sim, cloudflare_http, clock, budget=budget)
    for _ in range(12):
        await client.get_account(ACC)
    with pytest.raises(BudgetExhausted) as err:
        await client.get_account(ACC)
    assert catalogue_error(err.value).code == "SYS_003"
    assert all(status != 429 for _m, _p, status in sim.requests)

    # Without a budget (another tool on the same token), Cloudflare blocks the token for 5 minutes.
    reckless = make_client(cloudflare_sim, cloudflare_http, FakeClock(),
                           budget=RequestBudget(limit=1000, clock=FakeClock()))
    with pytest.raises(RateLimited) as err:
        await reckless.get_account(ACC)
    assert err.value.retry_after == 300 and err.value.code == 971
    assert reckless.budget.paused_for() > 200
    response = await cloudflare_http.get(f"{cloudflare_sim.url}/accounts/{ACC}",
                                         headers={"Authorization": f"Bearer {CF_TOKEN}"})
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 200


async def test_ratelimit_headers(cloudflare_sim, cloudflare_http):
    response = await cloudflare_http.get(f"{cloudflare_sim.url}/accounts/{ACC}",
                                         headers={"Authorization": f"Bearer {CF_TOKEN}"})
    assert response.headers["ratelimit-policy"] == '"default";q=1200;w=300'
    assert response.headers["ratelimit"].startswith('"default";r=1199')
