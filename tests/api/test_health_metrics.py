"""Health probes (healthy/degraded/unhealthy, never hanging) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.health import HealthMonitor, Probe, classify
from bot.metrics import Metrics
from bot.store.deliveries import DeliveryStore


def test_classify_is_pure():
    assert classify(200, 10, error=None, degraded_after_ms=100, degraded_statuses={}) == ("healthy", [])
    assert classify(401, 10, error=None, degraded_after_ms=100, degraded_statuses={}) == ("healthy", [])
    assert classify(200, 500, error=None, degraded_after_ms=100, degraded_statuses={})[0] == "degraded"
    assert classify(429, 10, error=None, degraded_after_ms=100, degraded_statuses={})[0] == "degraded"
    assert classify(401, 10, error=None, degraded_after_ms=100, degraded_statuses={401: "token"}) == ("degraded", ["token"])
    assert classify(503, 10, error=None, degraded_after_ms=100, degraded_statuses={})[0] == "unhealthy"
    assert classify(None, 10, error="down", degraded_after_ms=100, degraded_statuses={}) == ("unhealthy", ["down"])


async def _server(handler) -> TestServer:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_probes_classify_real_servers():
    release = asyncio.Event()

    async def ok(request):
        return web.json_response({"ok": True})

    async def slow(request):
        await asyncio.sleep(0.6)
        return web.json_response({})

    async def hang(request):
        await release.wait()
        return web.json_response({})

    async def broken(request):
        return web.json_response({}, status=500)

    servers = [await _server(h) for h in (ok, slow, hang, broken)]
    try:
        probes = [Probe(name, str(s.make_url("/v2/"))) for name, s in zip(("ok", "slow", "hang", "broken"), servers, strict=True)]
        probes.append(Probe("dead", "http://127.0.0.1:9/v2/"))
        monitor = HealthMonitor(probes, interval=60, timeout=1.5, degraded_after_ms=400)
        await monitor.start()
        try:
            started = time.perf_counter()
            await monitor.check_all()
            assert time.perf_counter() - started < 3
            status = {name: r.status for name, r in monitor.results.items()}
            assert status == {"ok": "healthy", "slow": "degraded", "hang": "unhealthy", "broken": "unhealthy", "dead": "unhealthy"}
            assert "High response times detected" in monitor.results["slow"].issues
            assert monitor.results["hang"].issues == ["No answer within 1.5s"]
            assert monitor.results["ok"].last_check and monitor.results["ok"].response_time_ms < 400
            assert monitor.snapshot()["healthy"] is False
        finally:
            await monitor.stop()
    finally:
        release.set()
        for s in servers:
            await s.close()


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_health_endpoint_answers_from_memory_with_a_hanging_dependency(make_api):
    release = asyncio.Event()

    async def hang(request):
        await release.wait()
        return web.json_response({})

    server = await _server(hang)
    try:
        api = await make_api(cloudflare_api_url=str(server.make_url("/client/v4")),
                             container_registry_url=str(server.make_url("")))
        for _ in range(3):
            started = time.perf_counter()
            resp, body = await api.call("GET", "/health/deployment")
            assert time.perf_counter() - started < 3  # the Cloudflare probe itself waits 5 s
            assert resp.status == 200 and body["success"] is True
            data = body["data"]
            assert set(data["services"]) == {"cloudflare", "github", "container_registry"}
            for service in data["services"].values():
                assert service["status"] in ("healthy", "degraded", "unhealthy")
                assert {"responseTime", "lastCheck", "issues"} <= set(service)
            assert data["activeDeployments"] >= 0 and data["queuedDeployments"] >= 0
        # GitHub points at a closed port: once probed it is unhealthy, and overall health is false.
        for _ in range(50):
            resp, body = await api.call("GET", "/health/deployment")
            if body["data"]["services"]["github"]["lastCheck"]:
                break
            await asyncio.sleep(0.05)
        assert body["data"]["services"]["github"]["status"] == "unhealthy"
        assert body["data"]["healthy"] is False
    finally:
        release.set()
        await server.close()


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_hooks_render_prometheus_text():
    metrics = Metrics()
    other = Metrics()
    metrics.webhook_delivery("issue_comment", "accepted")
    metrics.webhook_delivery("issue_comment", "accepted")
    metrics.cloudflare_call("PUT", None)
    metrics.rate_limit("github", "installation:1", 4500, 5000)
    metrics.deployment_counts(1, 3)
    samples = _samples(metrics.render().decode())
    assert samples[("flareship_webhook_deliveries_total", (("event", "issue_comment"), ("outcome", "accepted")))] == 2
    assert samples[("flareship_cloudflare_errors_total", (("method", "PUT"), ("status", "error")))] == 1
    assert samples[("flareship_rate_limit_headroom_ratio", (("scope", "installation:1"), ("service", "github")))] == 0.9
    assert samples[("flareship_queue_depth", ())] == 3
    # Registries are per instance: another app's metrics are untouched.
    assert ("flareship_queue_depth", ()) in _samples(other.render().decode())
    assert _samples(other.render().decode())[("flareship_queue_depth", ())] == 0


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_metrics_endpoint_open_or_guarded_by_metrics_token(make_api):
    api = await make_api()
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/plain"
    assert ("flareship_queue_depth" in text and "flareship_deployments_total" in text) or "flareship_deployments" in text
    guarded = await make_api(metrics_token="metrics-secret-123")
    resp = await guarded.client.get("/metrics")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "AUTH_007"
    resp = await guarded.client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-123"})
    assert resp.status == 200


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_monitoring_endpoints_need_read(api):
    token = await api.token("read")
    resp, body = await api.call("GET", "/metrics/resources", token=token)
    assert resp.status == 200
    assert body["data"]["process"]["rssBytes"] > 0 and body["data"]["eventLoop"]["tasks"] >= 1


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_api_calls_are_counted_and_metrics_shared_through_services(api):
    from bot.services import SERVICES

    token = await api.token("read")
    await api.call("GET", "/metrics/resources", token=token)
    await api.call("GET", "/metrics/resources")
    assert api.app[SERVICES].metrics is not None
    api.app[SERVICES].metrics.webhook_delivery("push", "accepted")
    samples = _samples(await (await api.client.get("/metrics")).text())
    assert samples[("flareship_api_requests_total", (("operation", "getResourceUsage"), ("status", "200")))] == 1
    assert samples[("flareship_api_requests_total", (("operation", "getResourceUsage"), ("status", "401")))] == 1
    assert samples[("flareship_webhook_deliveries_total", (("event", "push"), ("outcome", "accepted")))] == 1


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_github_is_probed_as_the_app(github_sim, make_api):
    from pydantic import SecretStr

    api = await make_api(github_api_url=github_sim.url, github_app_id=str(github_sim.app_id),
                         github_private_key=SecretStr(github_sim.app_private_key))
    for _ in range(100):
        _resp, body = await api.call("GET", "/health/deployment")
        github = body["data"]["services"]["github"]
        if github["lastCheck"]:
            break
        await asyncio.sleep(0.02)
    assert github["status"] in ("healthy", "degraded") and "JWT" not in " ".join(github["issues"])
    assert any(r.path.endswith("/app") and r.auth == "jwt" and r.status == 200 for r in github_sim.sim.requests)

    wrong = await make_api(github_api_url=github_sim.url, github_app_id="999999",
                           github_private_key=SecretStr(github_sim.app_private_key))
    for _ in range(100):
        _resp, body = await wrong.call("GET", "/health/deployment")
        github = body["data"]["services"]["github"]
        if github["lastCheck"]:
            break
        await asyncio.sleep(0.02)
    assert github["status"] == "degraded" and "JWT" in github["issues"][0]


# -- readiness (/readyz) and service metrics --------------------------------------------------------


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_readyz_is_bare_and_names_what_is_not_ready(api):
    import sqlalchemy as sa

    from bot.dispatcher import DISPATCHER
    from bot.health import head_revision
    from bot.services import SERVICES

    resp = await api.client.get("/readyz")
    assert resp.status == 200 and await resp.json() == {"status": "ready"}

    database = api.app[SERVICES].database
    head = head_revision()
    assert head is not None and head >= "0007"
    async with database.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    try:
        resp = await api.client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["status"] == "not ready"
        assert body["problems"] == {"migrations": f"schema at revision 0005, code expects {head}"}
    finally:
        async with database.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head})

    await api.app[DISPATCHER].stop()
    resp = await api.client.get("/readyz")
    body = await resp.json()
    assert resp.status == 503 and body["problems"] == {"dispatcher": "not running"}
    assert "success" not in body and "error" not in body  # bare: not the API envelope


async def test_readiness_reports_an_unreachable_database():
    from bot.health import readiness
    from bot.store.db import Database

    database = Database("postgresql://flareship:secret-pw@127.0.0.1:9/flareship")
    try:
        problems = await readiness(database, None, timeout=2)
    finally:
        await database.close()
    assert set(problems) == {"database", "migrations", "dispatcher"}
    assert problems["database"].startswith("unreachable: ") and "secret-pw" not in str(problems)


def test_dependency_up_stays_binary_and_degraded_is_its_own_gauge():
    metrics = Metrics()
    metrics.dependency_status("github", "degraded")
    metrics.dependency_status("cloudflare", "healthy")
    metrics.dependency_status("container_registry", "unhealthy")
    samples = _samples(metrics.render().decode())
    up = {s: samples[("flareship_dependency_up", (("service", s),))] for s in ("github", "cloudflare", "container_registry")}
    degraded = {s: samples[("flareship_dependency_degraded", (("service", s),))] for s in up}
    assert up == {"github": 1, "cloudflare": 1, "container_registry": 0}
    assert degraded == {"github": 1, "cloudflare": 0, "container_registry": 0}
    # prometheus-client's standard process and platform collectors, on the app's own registry
    names = {name for name, _ in samples}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "python_info", "python_gc_collections_total"} <= names


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_metrics_latency_by_route_template_webhook_acks_and_backlog(api):
    from bot.dispatcher import DISPATCHER
    from bot.services import SERVICES
    from tests.plugins.webhooks import post_webhook

    for deployment_id in ("dep_one", "dep_two", "dep_three"):
        await api.client.get(f"/deploy/{deployment_id}/status")  # 401: no token; still a matched route
    await api.client.get("/no/such/path/abc123")
    ping = await post_webhook(api.client, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert ping.status == 200
    # A stored delivery the dispatcher has not handled yet counts in the backlog.
    await api.app[DISPATCHER].stop()
    stored = await post_webhook(api.client, "issue_comment", "issue_comment.created.pull_request")
    assert stored.status == 202
    assert (await DeliveryStore(api.app[SERVICES].database).count_by_status()).get("pending") == 1

    samples = _samples(await (await api.client.get("/metrics")).text())
    status_route = ("flareship_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", "/deploy/{deploymentId}/status"), ("status", "401")))
    assert samples[status_route] == 3
    assert not any("dep_one" in dict(labels).get("route", "") for _, labels in samples)  # never the raw path
    assert samples[("flareship_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert samples[("flareship_webhook_ack_seconds_count", (("status", "200"),))] == 1
    assert samples[("flareship_webhook_ack_seconds_count", (("status", "202"),))] == 1
    assert samples[("flareship_webhook_ack_seconds_bucket", (("le", "10.0"), ("status", "202")))] == 1
    assert samples[("flareship_dispatcher_backlog", (("status", "pending"),))] == 1
    assert samples[("flareship_dispatcher_backlog", (("status", "processing"),))] == 0
