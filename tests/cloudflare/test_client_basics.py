"""The client against the simulated Cloudflare: verify, probes, plan, upload, versions, rollback."""

from __future__ import annotations

import pytest

from bot.cloudflare import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TokenInactive,
    ValidationFailed,
    WorkerModule,
    durable_object_binding,
    sqlite_migration,
    var_bindings,
)
from bot.engine.failures import catalogue_error
from bot.sim.cloudflare import DEPLOY_PERMISSIONS
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_SUBDOMAIN, make_client

MAIN = b"export class AppContainer {}\nexport class Counter {}\nexport default { fetch() { return new Response('ok') } }\n"


def modules(extra: dict[str, bytes] | None = None) -> list[WorkerModule]:
    return [WorkerModule("index.js", MAIN), *(WorkerModule(k, v) for k, v in (extra or {}).items())]


async def first_upload(client, script="my-app"):
    return await client.upload_worker(
        CF_ACCOUNT_ID, script, modules({"lib/util.js": b"export const x = 1;\n", "data.wasm": b"\0asm"}),
        main_module="index.js", compatibility_date="2025-09-01",
        bindings=[durable_object_binding("APP_CONTAINER", "AppContainer"), *var_bindings({"LOG": "info", "N": 3})],
        migrations=sqlite_migration(None, "v1", ["AppContainer"]), containers=[{"class_name": "AppContainer"}],
    )


async def test_verify_user_token(cloudflare_client):
    info = await cloudflare_client.verify_token(CF_ACCOUNT_ID)
    assert info.status == "active" and info.kind == "user"


async def test_verify_account_token_by_prefix(cloudflare_sim, cloudflare_http, cloudflare_clock):
    cloudflare_sim.sim.add_token("cfat_accounttoken0123456789", [CF_ACCOUNT_ID])
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="cfat_accounttoken0123456789")
    info = await client.verify_token(CF_ACCOUNT_ID)
    assert info.kind == "account" and info.status == "active"
    assert cloudflare_sim.sim.count_requests("GET", "/user/tokens/verify") == 0


async def test_account_token_at_user_endpoint_answers_1000_then_account_endpoint(cloudflare_client):
    with pytest.raises(AuthenticationError) as err:
        await cloudflare_client.call("GET", "/user/tokens/verify", headers={"Authorization": "Bearer cfat_nothing"})
    assert err.value.code in (9106, 1000)


async def test_invalid_token_is_authentication_error(cloudflare_sim, cloudflare_http, cloudflare_clock):
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="not-a-real-token-123456")
    with pytest.raises(AuthenticationError) as err:
        await client.verify_token(CF_ACCOUNT_ID)
    assert catalogue_error(err.value, "Authenticating with Cloudflare").code == "AUTH_003"
    assert "not-a-real-token" not in str(err.value) and "not-a-real-token" not in repr(err.value)


@pytest.mark.parametrize("status", ["disabled", "expired"])
async def test_inactive_token(cloudflare_sim, cloudflare_http, cloudflare_clock, status):
    cloudflare_sim.sim.add_token("sim-inactive-token-123456", [CF_ACCOUNT_ID], status=status)
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-inactive-token-123456")
    with pytest.raises(TokenInactive) as err:
        await client.verify_token(CF_ACCOUNT_ID)
    assert err.value.token_status == status
    assert catalogue_error(err.value).code == "AUTH_003"


async def test_expires_on_in_the_past(cloudflare_sim, cloudflare_http, cloudflare_clock):
    cloudflare_sim.sim.add_token("sim-old-token-1234567890", [CF_ACCOUNT_ID], expires_on="2020-01-01T00:00:00Z")
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-old-token-1234567890")
    with pytest.raises(TokenInactive):
        await client.verify_token(CF_ACCOUNT_ID)


async def test_probes_name_missing_permission(cloudflare_sim, cloudflare_http, cloudflare_clock):
    cloudflare_sim.sim.add_token("sim-no-containers-12345", [CF_ACCOUNT_ID],
                                 DEPLOY_PERMISSIONS - {"containers:read", "containers:edit"})
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-no-containers-12345")
    report = await client.probe_permissions(CF_ACCOUNT_ID)
    assert report.granted == {"account": True, "workers": True, "durableObjects": True, "subdomain": True,
                              "containers": False}
    assert report.missing == {"containers": "Account:Containers:Edit"}


async def test_probes_on_free_plan_say_plan_not_permission(cloudflare_sim, cloudflare_http, cloudflare_clock):
    free = "fedcba9876543210fedcba9876543210"
    cloudflare_sim.seed_account(free, "sim-free-token-123456789", plan="free", subdomain=None)
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-free-token-123456789")
    report = await client.probe_permissions(free)
    assert report.granted["containers"] is False and report.plan_blocked == {"containers"}
    assert report.granted["subdomain"] is True  # readable, just not created yet
    plan = await client.account_plan(free)
    assert plan.workers_plan == "free" and plan.type == "free"


async def test_bad_account_id_is_7003(cloudflare_client):
    with pytest.raises(NotFound) as err:
        await cloudflare_client.probe_permissions("not-an-account")
    assert 7003 in err.value.codes


async def test_wrong_account_is_permission_denied(cloudflare_client):
    with pytest.raises(PermissionDenied) as err:
        await cloudflare_client.get_account("ffffffffffffffffffffffffffffffff")
    assert catalogue_error(err.value).code == "AUTH_004"


async def test_account_plan_enterprise_and_subscriptions(cloudflare_sim, cloudflare_http, cloudflare_clock):
    ent = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
    cloudflare_sim.sim.add_account(ent, "Big", "enterprise", "paid", subscriptions=["Business", "Workers Paid"])
    cloudflare_sim.sim.add_token("sim-ent-token-1234567890", [ent])
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-ent-token-1234567890")
    plan = await client.account_plan(ent)
    assert (plan.type, plan.workers_plan, plan.subscriptions_readable) == ("enterprise", "paid", True)
    biz = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    cloudflare_sim.sim.add_account(biz, "Biz", "standard", "paid", subscriptions=["Business"])
    cloudflare_sim.sim.add_token("sim-biz-token-1234567890", [biz], DEPLOY_PERMISSIONS)
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-biz-token-1234567890")
    plan = await client.account_plan(biz)  # billing unreadable: falls back to /containers/me
    assert (plan.type, plan.workers_plan, plan.subscriptions_readable) == ("free", "paid", False)


async def test_upload_multipart_one_part_per_module(cloudflare_sim, cloudflare_client):
    result = await first_upload(cloudflare_client)
    script = cloudflare_sim.sim.script(CF_ACCOUNT_ID, "my-app")
    version = script.versions[-1]
    assert result["deployment_id"] == version.id and result["migration_tag"] == "v1"
    assert set(version.modules) == {"index.js", "lib/util.js", "data.wasm"}
    assert version.modules["index.js"].content_type == "application/javascript+module"
    assert version.modules["data.wasm"].content_type == "application/wasm"
    assert version.metadata["main_module"] == "index.js"
    kinds = {b["name"]: b["type"] for b in version.bindings}
    assert kinds == {"APP_CONTAINER": "durable_object_namespace", "LOG": "plain_text", "N": "json"}
    ns = [n for n in cloudflare_sim.sim.namespaces.values() if n.script == "my-app"]
    assert [(n.class_name, n.use_sqlite) for n in ns] == [("AppContainer", True)]
    assert await cloudflare_client.script_state(CF_ACCOUNT_ID, "my-app") == (True, "v1")


async def test_main_module_missing_is_10021(cloudflare_client):
    with pytest.raises(ValidationFailed) as err:
        await cloudflare_client.call("PUT", f"/accounts/{CF_ACCOUNT_ID}/workers/scripts/x", files=[
            ("metadata", ("m.json", b'{"main_module": "missing.js", "compatibility_date": "2025-01-01"}',
                          "application/json")),
            ("index.js", ("index.js", MAIN, "application/javascript+module"))])
    assert err.value.code == 10021
    assert catalogue_error(err.value, "Uploading Worker version").code == "DEPLOY_008"


async def test_too_large_is_10027(cloudflare_sim, cloudflare_client):
    cloudflare_sim.sim.accounts[CF_ACCOUNT_ID].max_script_bytes = 100
    with pytest.raises(ValidationFailed) as err:
        await cloudflare_client.upload_worker(CF_ACCOUNT_ID, "big", modules(), main_module="index.js",
                                              compatibility_date="2025-09-01")
    assert err.value.code == 10027


async def test_migration_old_tag_must_match(cloudflare_client):
    await first_upload(cloudflare_client)
    with pytest.raises(ValidationFailed) as err:
        await cloudflare_client.upload_worker(
            CF_ACCOUNT_ID, "my-app", modules(), main_module="index.js", compatibility_date="2025-09-01",
            migrations=sqlite_migration(None, "v2", ["Counter"]))
    assert err.value.code == 10079
    result = await cloudflare_client.upload_worker(
        CF_ACCOUNT_ID, "my-app", modules(), main_module="index.js", compatibility_date="2025-09-01",
        bindings=[durable_object_binding("COUNTER", "Counter")],
        migrations=sqlite_migration("v1", "v2", ["Counter"]))
    assert result["migration_tag"] == "v2"


async def test_binding_without_migration_is_refused(cloudflare_client):
    with pytest.raises(ValidationFailed) as err:
        await cloudflare_client.upload_worker(
            CF_ACCOUNT_ID, "nomig", modules(), main_module="index.js", compatibility_date="2025-09-01",
            bindings=[durable_object_binding("COUNTER", "Counter")])
    assert err.value.code == 10061


async def test_plan_limits(cloudflare_sim, cloudflare_http, cloudflare_clock):
    free = "fedcba9876543210fedcba9876543210"
    cloudflare_sim.seed_account(free, "sim-free-token-123456789", plan="free")
    cloudflare_sim.sim.accounts[free].max_workers = 1
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-free-token-123456789")
    with pytest.raises(QuotaExceeded) as err:
        await client.upload_worker(free, "c", modules(), main_module="index.js", compatibility_date="2025-09-01",
                                   migrations=sqlite_migration(None, "v1", ["AppContainer"]),
                                   containers=[{"class_name": "AppContainer"}])
    assert err.value.code == 10075
    assert catalogue_error(err.value, "Checking resources and quotas").status == 402
    await client.upload_worker(free, "one", modules(), main_module="index.js", compatibility_date="2025-09-01")
    with pytest.raises(QuotaExceeded) as err:
        await client.upload_worker(free, "two", modules(), main_module="index.js", compatibility_date="2025-09-01")
    assert err.value.code == 10037


async def test_new_version_not_visible_at_first_is_retried(cloudflare_sim, cloudflare_client):
    cloudflare_sim.sim.hidden_version_reads = 3
    result = await first_upload(cloudflare_client)
    version = await cloudflare_client.get_version(CF_ACCOUNT_ID, "my-app", result["deployment_id"])
    assert version["id"] == result["deployment_id"]
    assert cloudflare_sim.sim.count_requests("GET", "/versions/") == 4
    ids = await cloudflare_client.durable_object_namespace_ids(CF_ACCOUNT_ID, "my-app", result["deployment_id"])
    assert list(ids) == ["AppContainer"]


async def test_rollback_is_a_new_deployment_and_forces_on_10220(cloudflare_sim, cloudflare_client, cloudflare_http):
    first = await first_upload(cloudflare_client)
    await cloudflare_client.upload_worker(CF_ACCOUNT_ID, "my-app", modules(), main_module="index.js",
                                          compatibility_date="2025-09-01",
                                          bindings=[durable_object_binding("APP_CONTAINER", "AppContainer")],
                                          containers=[{"class_name": "AppContainer"}])
    cloudflare_sim.sim.script(CF_ACCOUNT_ID, "my-app").rollback_needs_force = True
    before = cloudflare_sim.sim.creates["deployment"]
    deployment = await cloudflare_client.rollback(CF_ACCOUNT_ID, "my-app", message="rollback")
    assert deployment["versions"] == [{"version_id": first["deployment_id"], "percentage": 100.0}]
    assert cloudflare_sim.sim.creates["deployment"] == before + 1
    assert cloudflare_sim.sim.count_requests("POST", "/deployments") == 2  # refused with 10220, then forced
    assert await cloudflare_client.deployed_version(CF_ACCOUNT_ID, "my-app") == first["deployment_id"]
    # the served Worker answers for the rolled-back version
    await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, "my-app")
    url = cloudflare_sim.workers_url_template.format(subdomain=CF_SUBDOMAIN, script="my-app")
    served = (await cloudflare_http.get(url + "/health")).json()
    assert served["version_id"] == first["deployment_id"]


async def test_create_deployment_of_live_version_creates_nothing(cloudflare_sim, cloudflare_client):
    first = await first_upload(cloudflare_client)
    before = cloudflare_sim.sim.creates["deployment"]
    await cloudflare_client.create_deployment(CF_ACCOUNT_ID, "my-app", first["deployment_id"])
    assert cloudflare_sim.sim.creates["deployment"] == before


async def test_subdomains_routes_domains(cloudflare_sim, cloudflare_client):
    await first_upload(cloudflare_client)
    assert await cloudflare_client.get_account_subdomain(CF_ACCOUNT_ID) == CF_SUBDOMAIN
    state = await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, "my-app")
    assert state["enabled"] is True and cloudflare_sim.sim.script_api_dates == ["2025-08-01"]
    zone = "aaaabbbbccccddddaaaabbbbccccdddd"
    cloudflare_sim.sim.add_zone(zone, "example.com", CF_ACCOUNT_ID)
    route = await cloudflare_client.ensure_route(zone, "app.example.com/*", "my-app")
    again = await cloudflare_client.ensure_route(zone, "app.example.com/*", "my-app")
    assert route["id"] == again["id"] and cloudflare_sim.sim.creates["route"] == 1
    domain = await cloudflare_client.attach_domain(CF_ACCOUNT_ID, "api.example.com", "my-app", zone)
    await cloudflare_client.attach_domain(CF_ACCOUNT_ID, "api.example.com", "my-app", zone)
    assert domain["hostname"] == "api.example.com" and cloudflare_sim.sim.creates["domain"] == 1


async def test_account_without_subdomain_gets_one(cloudflare_sim, cloudflare_http, cloudflare_clock):
    other = "1111111111111111aaaaaaaaaaaaaaaa"
    cloudflare_sim.seed_account(other, "sim-other-token-12345678", subdomain=None)
    client = make_client(cloudflare_sim, cloudflare_http, cloudflare_clock, token="sim-other-token-12345678")
    assert await client.get_account_subdomain(other) is None
    assert await client.ensure_account_subdomain(other, "acme-sub") == "acme-sub"
    assert await client.ensure_account_subdomain(other, "ignored") == "acme-sub"


async def test_workers_served_by_health(cloudflare_sim, cloudflare_client, cloudflare_http):
    result = await first_upload(cloudflare_client)
    url = cloudflare_sim.workers_url_template.format(subdomain=CF_SUBDOMAIN, script="my-app")
    assert (await cloudflare_http.get(url + "/health")).status_code == 404  # subdomain not enabled yet
    await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, "my-app")
    assert (await cloudflare_http.get(url + "/health")).status_code == 200
    cloudflare_sim.sim.set_worker_health("my-app", "failing", version_id=result["deployment_id"])
    assert (await cloudflare_http.get(url + "/health")).status_code == 500
    cloudflare_sim.sim.slow_seconds = 2
    cloudflare_sim.sim.set_worker_health("my-app", "slow")
    cloudflare_sim.sim.worker_health.pop(("my-app", result["deployment_id"]))
    import httpx
    with pytest.raises(httpx.ReadTimeout):
        await cloudflare_http.get(url + "/", timeout=0.2)


async def test_annotations_fit_cloudflares_limits(cloudflare_sim, cloudflare_client):
    long_tag = "dep_01JABCDEFGHJKMNPQRSTVWXYZ0"
    result = await cloudflare_client.upload_worker(
        CF_ACCOUNT_ID, "annotated", modules(), main_module="index.js", compatibility_date="2025-09-01",
        annotations={"workers/message": "m" * 120, "workers/tag": long_tag})
    version = cloudflare_sim.sim.script(CF_ACCOUNT_ID, "annotated").versions[-1]
    tag = version.metadata["annotations"]["workers/tag"]
    assert len(tag) <= 20 and len(version.metadata["annotations"]["workers/message"]) == 50
    again = await cloudflare_client.upload_worker(  # same tag: recognised, nothing uploaded twice
        CF_ACCOUNT_ID, "annotated", modules(), main_module="index.js", compatibility_date="2025-09-01",
        annotations={"workers/message": "m" * 120, "workers/tag": long_tag})
    assert again["reused"] and again["deployment_id"] == result["deployment_id"]
    assert len(cloudflare_sim.sim.script(CF_ACCOUNT_ID, "annotated").versions) == 1


async def test_sim_rejects_annotations_over_the_limit(cloudflare_sim, cloudflare_client):
    with pytest.raises(ValidationFailed) as err:
        await cloudflare_client.call("PUT", f"/accounts/{CF_ACCOUNT_ID}/workers/scripts/x", files=[
            ("metadata", ("m.json", b'{"main_module": "index.js", "annotations": {"workers/tag": "'
                          + b"x" * 30 + b'"}}', "application/json")),
            ("index.js", ("index.js", MAIN, "application/javascript+module"))])
    assert "workers/tag" in str(err.value)


async def test_version_upload_then_deploy(cloudflare_sim, cloudflare_client):
    first = await first_upload(cloudflare_client)
    version = await cloudflare_client.upload_version(
        CF_ACCOUNT_ID, "my-app", modules({"extra.js": b"export const y = 2;\n"}), main_module="index.js",
        compatibility_date="2025-09-01", bindings=[durable_object_binding("APP_CONTAINER", "AppContainer")],
        annotations={"workers/message": "staged"})
    assert version["id"] != first["deployment_id"]
    assert await cloudflare_client.deployed_version(CF_ACCOUNT_ID, "my-app") == first["deployment_id"]
    again = await cloudflare_client.upload_version(
        CF_ACCOUNT_ID, "my-app", modules({"extra.js": b"export const y = 2;\n"}), main_module="index.js",
        compatibility_date="2025-09-01", bindings=[durable_object_binding("APP_CONTAINER", "AppContainer")],
        annotations={"workers/message": "staged"})
    assert again["id"] == version["id"] and cloudflare_sim.sim.creates["version"] == 2
    await cloudflare_client.create_deployment(CF_ACCOUNT_ID, "my-app", version["id"])
    assert await cloudflare_client.deployed_version(CF_ACCOUNT_ID, "my-app") == version["id"]
    with pytest.raises(NotFound):
        await cloudflare_client.upload_version(CF_ACCOUNT_ID, "missing", modules(), main_module="index.js",
                                               compatibility_date="2025-09-01")


async def test_served_worker_shows_container_image(cloudflare_sim, cloudflare_client, cloudflare_http):
    result = await first_upload(cloudflare_client)
    await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, "my-app")
    ns = await cloudflare_client.durable_object_namespace_ids(CF_ACCOUNT_ID, "my-app", result["deployment_id"])
    image = f"{cloudflare_sim.registry_host}/{CF_ACCOUNT_ID}/app@sha256:" + "1" * 64
    await cloudflare_client.deploy_application(CF_ACCOUNT_ID, name="my-app-appcontainer", image=image,
                                               namespace_id=ns["AppContainer"], max_instances=1)
    url = cloudflare_sim.workers_url_template.format(subdomain=CF_SUBDOMAIN, script="my-app")
    assert (await cloudflare_http.get(url)).json()["containers"] == {"my-app-appcontainer": image}
    rolled = image[:-64] + "2" * 64
    result = await cloudflare_client.deploy_application(CF_ACCOUNT_ID, name="my-app-appcontainer", image=rolled,
                                                        namespace_id=ns["AppContainer"], max_instances=1)
    assert result.changed and result.rollout["target_configuration"]["image"] == rolled
    assert (await cloudflare_http.get(url)).json()["containers"] == {"my-app-appcontainer": rolled}
