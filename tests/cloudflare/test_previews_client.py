"""The Worker Previews client against the simulated Cloudflare: get/ensure, deploy, latest, delete,
the 10007/10025 answers, and the `script` mode deletes."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from bot.cloudflare import (
    NotFound,
    ParentWorkerMissing,
    Preview,
    ValidationFailed,
    WorkerModule,
    build_preview_metadata,
    durable_object_binding,
    pr_application_name,
    pr_script_name,
    preview_env,
    preview_migrations,
    preview_name,
)
from bot.cloudflare.previews import encode_preview, preview_settings
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_SUBDOMAIN

WORKER = "my-app"
MAIN = (b"export class Counter {}\nexport class AppContainer {}\n"
        b"export default { fetch() { return new Response('pr code') } }\n")
MIGRATIONS = [{"tag": "v1", "new_sqlite_classes": ["Counter"]}]


def metadata(**kw):
    base = {"main_module": "index.js", "compatibility_date": "2025-09-01",
            "bindings": [durable_object_binding("COUNTER", "Counter"),
                         {"type": "plain_text", "name": "LOG_LEVEL", "text": "debug"}],
            "migrations": preview_migrations(MIGRATIONS, None)}
    base.update(kw)
    return build_preview_metadata(**base)


async def parent(client, worker=WORKER):
    await client.create_parent_worker(CF_ACCOUNT_ID, worker)


# -- pure helpers ----------------------------------------------------------------------------


def test_names_follow_product_md():
    assert preview_name(17) == "pr-17"
    assert pr_script_name("my-app", 17) == "my-app-pr-17"
    assert pr_application_name("my-app", 17, "AppContainer") == "my-app-pr-17-appcontainer"


def test_preview_name_is_encoded_like_encode_uri_component():
    assert encode_preview("feature/login") == "feature%2Flogin"
    assert encode_preview("a b(c)!") == "a%20b(c)!"


def test_env_drops_namespace_ids_and_inherits_secrets_not_resent():
    env = preview_env([{"type": "durable_object_namespace", "name": "C", "class_name": "Counter",
                        "namespace_id": "parent-ns"},
                       {"type": "secret_text", "name": "TOKEN", "text": "s3cret"}],
                      inherit=["TOKEN", "API_KEY"])
    assert env == {"C": {"type": "durable_object_namespace", "class_name": "Counter"},
                   "TOKEN": {"type": "secret_text", "text": "s3cret"},
                   "API_KEY": {"type": "inherit"}}
    with pytest.raises(ValueError, match="twice"):
        preview_env([{"type": "plain_text", "name": "A", "text": "1"}] * 2)


def test_migrations_per_preview_like_wrangler():
    steps = [{"tag": "v1", "new_sqlite_classes": ["A"]}, {"tag": "v2", "new_sqlite_classes": ["B"]}]
    assert preview_migrations(steps, None) == {"new_tag": "v2", "steps": [{"new_sqlite_classes": ["A"]},
                                                                          {"new_sqlite_classes": ["B"]}]}
    assert preview_migrations(steps, "v1") == {"old_tag": "v1", "new_tag": "v2",
                                               "steps": [{"new_sqlite_classes": ["B"]}]}
    assert preview_migrations(steps, "v2") is None
    assert preview_migrations(steps, "gone")["steps"] == [{"new_sqlite_classes": ["A"]}, {"new_sqlite_classes": ["B"]}]
    assert preview_migrations([], None) is None


def test_metadata_has_env_not_bindings_nor_keep_bindings():
    meta = metadata(containers=["Counter"], annotations={"workers/message": "x" * 80})
    assert "bindings" not in meta and "keep_bindings" not in meta
    assert meta["containers"] == [{"class_name": "Counter"}]
    assert len(meta["annotations"]["workers/message"]) == 50


# -- against the simulator ---------------------------------------------------------------------


async def test_get_preview_raises_parent_missing_on_10007(cloudflare_client):
    with pytest.raises(ParentWorkerMissing) as err:
        await cloudflare_client.get_preview(CF_ACCOUNT_ID, WORKER, "pr-1")
    assert err.value.code == 10007 and isinstance(err.value, NotFound)
    assert "does not exist yet" in str(err.value) and WORKER in str(err.value)


async def test_ensure_preview_raises_parent_missing_and_creates_nothing(cloudflare_client, cloudflare_sim):
    with pytest.raises(ParentWorkerMissing):
        await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-1")
    assert cloudflare_sim.sim.count_requests("POST") == 0
    assert cloudflare_sim.sim.script(CF_ACCOUNT_ID, WORKER) is None


async def test_get_preview_is_none_on_10025_then_ensure_creates_once(cloudflare_client, cloudflare_sim):
    await parent(cloudflare_client)
    assert await cloudflare_client.get_preview(CF_ACCOUNT_ID, WORKER, "pr-1") is None
    created = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-1")
    again = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-1")
    assert created == again and created.slug == "pr-1" and created.worker_name == WORKER
    assert created.url and created.url.endswith(f"/__workers/{CF_SUBDOMAIN}/pr-1-{WORKER}")
    assert cloudflare_sim.sim.creates["preview"] == 1
    assert await cloudflare_client.get_preview(CF_ACCOUNT_ID, WORKER, created.id) == created


def test_preview_settings_follow_wrangler():
    """observability and logpush from the previews block, else the top level; tail consumers only
    from the block, by service name (deploy-helpers preview/shared.ts assemblePreviewScriptSettings)."""
    top = {"observability": {"enabled": True}, "logpush": True, "tail_consumers": [{"service": "prod-tail"}]}
    assert preview_settings({}, top) == {"observability": {"enabled": True}, "logpush": True}
    block = {"observability": {"enabled": False}, "tail_consumers": [{"service": "t", "environment": "x"}]}
    assert preview_settings(block, top) == {"observability": {"enabled": False}, "logpush": True,
                                            "tail_consumers": [{"name": "t"}]}
    assert preview_settings({"logpush": False}, {}) == {"logpush": False}
    assert preview_settings({}, {}) == {}


async def test_preview_settings_are_sent_on_create_and_patched_only_when_they_change(cloudflare_client, cloudflare_sim):
    await parent(cloudflare_client)
    wanted = {"observability": {"enabled": True, "head_sampling_rate": 0.5}, "logpush": True}
    created = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-4", settings=wanted)
    assert created.settings["observability"] == wanted["observability"] and created.settings["logpush"] is True
    again = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-4", settings=wanted)
    assert again == created and cloudflare_sim.sim.count_requests("PATCH", "/previews/") == 0
    changed = await cloudflare_client.ensure_preview(
        CF_ACCOUNT_ID, WORKER, "pr-4", settings={**wanted, "tail_consumers": [{"name": "tail"}]})
    assert changed.settings["tail_consumers"] == [{"name": "tail"}] and changed.id == created.id
    patches = [p for m, p, _ in cloudflare_sim.sim.requests if m == "PATCH" and "/previews/" in p]
    assert patches == [f"/accounts/{CF_ACCOUNT_ID}/workers/workers/{WORKER}/previews/pr-4"], patches


async def test_a_worker_uploaded_as_a_script_owns_previews(cloudflare_client):
    await cloudflare_client.upload_worker(CF_ACCOUNT_ID, WORKER, [WorkerModule("index.js", MAIN)],
                                          main_module="index.js", compatibility_date="2025-09-01")
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-3")
    assert preview.name == "pr-3"


async def test_name_with_a_slash_is_one_path_segment(cloudflare_client, cloudflare_sim):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "feature/login")
    assert preview.slug == "feature-login"
    assert await cloudflare_client.get_preview(CF_ACCOUNT_ID, WORKER, "feature/login") == preview
    assert cloudflare_client.stats[("GET", f"/accounts/{CF_ACCOUNT_ID}/workers/workers/{WORKER}"
                                           "/previews/feature%2Flogin")] == 2
    assert await cloudflare_client.delete_preview(CF_ACCOUNT_ID, WORKER, "feature/login") is True


async def test_deploy_serves_the_uploaded_code_at_both_urls(cloudflare_client, cloudflare_sim, cloudflare_http):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-7")
    assert await cloudflare_client.latest_deployment(CF_ACCOUNT_ID, WORKER, preview) is None
    deployment = await cloudflare_client.deploy_to_preview(
        CF_ACCOUNT_ID, WORKER, preview, metadata(annotations={"workers/tag": "sha-abc"}),
        [WorkerModule("index.js", MAIN)])
    assert deployment.preview_url == preview.url and deployment.url and deployment.url != preview.url
    assert deployment.migration_tag == "v1" and deployment.annotations["workers/tag"] == "sha-abc"
    for url in (deployment.preview_url, deployment.url):
        served = (await cloudflare_http.get(url + "/health")).json()
        assert served["deployment_id"] == deployment.id and served["path"] == "/health"
        assert served["vars"] == {"LOG_LEVEL": "debug"}
        assert served["main_module_sha256"] == hashlib.sha256(MAIN).hexdigest()  # the uploaded code answers
    stored = cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, WORKER, "pr-7")
    assert stored.deployments[-1].modules["index.js"].content == MAIN
    latest = await cloudflare_client.latest_deployment(CF_ACCOUNT_ID, WORKER, preview)
    assert latest == deployment


async def test_a_second_push_moves_the_preview_url_and_keeps_the_first_deployment_url(
        cloudflare_client, cloudflare_http):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-8")
    first = await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                      [WorkerModule("index.js", MAIN)])
    second = await cloudflare_client.deploy_to_preview(
        CF_ACCOUNT_ID, WORKER, preview.id, metadata(migrations=preview_migrations(MIGRATIONS, first.migration_tag)),
        {"index.js": MAIN + b"// push 2\n"})
    assert second.preview_url == preview.url  # read back from the Preview when given its id
    assert (await cloudflare_http.get(preview.url)).json()["deployment_id"] == second.id
    assert (await cloudflare_http.get(first.url)).json()["deployment_id"] == first.id


async def test_a_migration_against_the_wrong_tag_is_refused(cloudflare_client):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-9")
    await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                              [WorkerModule("index.js", MAIN)])
    with pytest.raises(ValidationFailed) as err:  # all steps again without old_tag: the sim says 10079
        await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                  [WorkerModule("index.js", MAIN + b"//2\n")])
    assert err.value.code == 10079


async def test_deploy_to_a_missing_preview_is_10025_and_to_a_missing_worker_10007(cloudflare_client):
    with pytest.raises(ParentWorkerMissing):
        await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, "nope", metadata(),
                                                  [WorkerModule("index.js", MAIN)])
    await parent(cloudflare_client)
    with pytest.raises(NotFound) as err:
        await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, "nope", metadata(),
                                                  [WorkerModule("index.js", MAIN)])
    assert err.value.code == 10025


async def test_a_lost_answer_is_read_back_not_deployed_twice(cloudflare_client, cloudflare_sim):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-10")
    cloudflare_sim.sim.inject_fault("POST", "*/previews/*/deployments", status=502, after=True, times=1)
    deployment = await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                           [WorkerModule("index.js", MAIN)])
    assert cloudflare_sim.sim.creates["preview_deployment"] == 1
    assert deployment.preview_url == preview.url


async def test_delete_is_idempotent_and_the_url_stops_serving(cloudflare_client, cloudflare_sim, cloudflare_http):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-11")
    deployment = await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                           [WorkerModule("index.js", MAIN)])
    assert (await cloudflare_http.get(preview.url)).status_code == 200
    assert await cloudflare_client.delete_preview(CF_ACCOUNT_ID, WORKER, "pr-11") is True
    assert await cloudflare_client.delete_preview(CF_ACCOUNT_ID, WORKER, "pr-11") is False
    assert await cloudflare_client.get_preview(CF_ACCOUNT_ID, WORKER, "pr-11") is None
    assert await cloudflare_client.latest_deployment(CF_ACCOUNT_ID, WORKER, preview) is None
    for url in (preview.url, deployment.url):
        assert (await cloudflare_http.get(url)).status_code == 404
    with pytest.raises(NotFound) as err:
        await cloudflare_client.call("DELETE", f"/accounts/{CF_ACCOUNT_ID}/workers/workers/{WORKER}/previews/pr-11")
    assert err.value.code == 10025


async def test_delete_of_a_preview_whose_worker_is_gone_is_false(cloudflare_client):
    assert await cloudflare_client.delete_preview(CF_ACCOUNT_ID, WORKER, "pr-12") is False


async def test_secrets_not_resent_are_inherited_not_copied_from_the_parent(cloudflare_client, cloudflare_http):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-13")
    first = await cloudflare_client.deploy_to_preview(
        CF_ACCOUNT_ID, WORKER, preview,
        metadata(bindings=[{"type": "secret_text", "name": "TOKEN", "text": "t0ken"}]),
        [WorkerModule("index.js", MAIN)])
    assert first.env == {"TOKEN": "secret_text"}
    second = await cloudflare_client.deploy_to_preview(
        CF_ACCOUNT_ID, WORKER, preview, metadata(bindings=[], migrations=None, inherit=first.secret_names),
        [WorkerModule("index.js", MAIN + b"//2\n")])
    assert second.env == {"TOKEN": "secret_text"}
    assert (await cloudflare_http.get(preview.url)).json()["secrets"] == ["TOKEN"]
    with pytest.raises(ValidationFailed) as err:  # nothing to inherit on a fresh Preview
        fresh = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-14")
        await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, fresh,
                                                  metadata(bindings=[], migrations=None, inherit=["TOKEN"]),
                                                  [WorkerModule("index.js", MAIN)])
    assert err.value.code == 10057


async def test_script_mode_deletes_are_idempotent(cloudflare_client, cloudflare_sim):
    script = pr_script_name(WORKER, 5)
    await cloudflare_client.upload_worker(CF_ACCOUNT_ID, script, [WorkerModule("index.js", MAIN)],
                                          main_module="index.js", compatibility_date="2025-09-01")
    assert await cloudflare_client.delete_script_if_present(CF_ACCOUNT_ID, script) is True
    assert await cloudflare_client.delete_script_if_present(CF_ACCOUNT_ID, script) is False
    assert cloudflare_sim.sim.script(CF_ACCOUNT_ID, script) is None
    name = pr_application_name(WORKER, 5, "AppContainer")
    assert await cloudflare_client.delete_container_application(CF_ACCOUNT_ID, name) is False


async def test_the_parent_worker_is_created_once(cloudflare_client, cloudflare_sim):
    first = await cloudflare_client.create_parent_worker(CF_ACCOUNT_ID, WORKER)
    second = await cloudflare_client.create_parent_worker(CF_ACCOUNT_ID, WORKER)
    assert first["id"] == second["id"] and first["subdomain"] == {"enabled": True, "previews_enabled": True}
    assert cloudflare_sim.sim.count_requests("POST", "/workers/workers") == 1
    assert isinstance(await cloudflare_client.get_worker(CF_ACCOUNT_ID, WORKER), dict)
    assert await cloudflare_client.get_worker(CF_ACCOUNT_ID, "other") is None


def test_preview_from_api_keeps_server_urls():
    preview = Preview.from_api({"id": "p1", "name": "pr-1", "slug": "pr-1",
                                "urls": ["https://pr-1-app.acme.workers.dev"]}, worker="app")
    assert preview.url == "https://pr-1-app.acme.workers.dev" and preview.worker_name == "app"
    assert Preview.from_api({"id": "p", "name": "n", "slug": "n"}).url is None


async def test_the_multipart_body_is_what_wrangler_sends(cloudflare_sim, cloudflare_client, cloudflare_http):
    """metadata as a plain field, each module a `files` part named by filename with its type."""
    seen: list[httpx.Request] = []
    real_send = cloudflare_http.send  # the client's HTTP transport (tests/plugins/cloudflare_sim.py)

    async def spy(request, **kw):
        request.read()  # the multipart stream can be read again when sent
        seen.append(request)
        return await real_send(request, **kw)

    cloudflare_http.send = spy
    try:
        await parent(cloudflare_client)
        preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-15")
        await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                  [WorkerModule("index.js", MAIN), WorkerModule("lib.wasm", b"\0asm")])
    finally:
        cloudflare_http.send = real_send
    upload = next(r for r in seen if r.method == "POST" and r.url.path.endswith("/deployments"))
    body = upload.content.decode("latin-1")
    assert 'Content-Disposition: form-data; name="metadata"\r\n\r\n{' in body
    assert 'name="files"; filename="index.js"\r\nContent-Type: application/javascript+module' in body
    assert 'name="files"; filename="lib.wasm"\r\nContent-Type: application/wasm' in body


async def test_script_mode_round_trip_deletes_the_pr_worker_and_its_container(cloudflare_client, cloudflare_sim,
                                                                               cloudflare_http):
    """`script` mode: PR 5's own Worker with its Durable Object and container application, then the
    close: both deleted, the URL gone, the parent untouched, and a second close changes nothing."""
    for script in (WORKER, pr_script_name(WORKER, 5)):
        result = await cloudflare_client.upload_worker(
            CF_ACCOUNT_ID, script, [WorkerModule("index.js", MAIN)], main_module="index.js",
            compatibility_date="2025-09-01", bindings=[durable_object_binding("APP", "AppContainer")],
            migrations={"new_tag": "v1", "steps": [{"new_sqlite_classes": ["AppContainer"]}]},
            containers=[{"class_name": "AppContainer"}])
        await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, script)
        ns = await cloudflare_client.durable_object_namespace_ids(CF_ACCOUNT_ID, script, result["deployment_id"])
        image = f"{cloudflare_sim.registry_host}/{CF_ACCOUNT_ID}/app@sha256:" + "1" * 64
        app = f"{script}-appcontainer"
        await cloudflare_client.deploy_application(CF_ACCOUNT_ID, name=app, image=image,
                                                   namespace_id=ns["AppContainer"], max_instances=1)
    pr_script, pr_app = pr_script_name(WORKER, 5), pr_application_name(WORKER, 5, "AppContainer")
    url = cloudflare_sim.workers_url_template.format(subdomain=CF_SUBDOMAIN, script=pr_script)
    assert (await cloudflare_http.get(url)).json()["containers"] == {pr_app: image}

    assert await cloudflare_client.delete_container_application(CF_ACCOUNT_ID, pr_app) is True
    assert await cloudflare_client.delete_script_if_present(CF_ACCOUNT_ID, pr_script) is True
    assert (await cloudflare_http.get(url)).status_code == 404
    assert await cloudflare_client.find_application(CF_ACCOUNT_ID, pr_app) is None
    assert cloudflare_sim.sim.script(CF_ACCOUNT_ID, pr_script) is None
    assert not [ns for ns in cloudflare_sim.sim.namespaces.values() if ns.script == pr_script]
    # a second close (or the sweep after a crash) is a no-op
    assert await cloudflare_client.delete_container_application(CF_ACCOUNT_ID, pr_app) is False
    assert await cloudflare_client.delete_script_if_present(CF_ACCOUNT_ID, pr_script) is False
    # the parent and its container are untouched
    assert await cloudflare_client.find_application(CF_ACCOUNT_ID, f"{WORKER}-appcontainer") is not None
    parent_url = cloudflare_sim.workers_url_template.format(subdomain=CF_SUBDOMAIN, script=WORKER)
    assert (await cloudflare_http.get(parent_url)).status_code == 200


async def test_ensure_preview_settles_a_lost_answer_and_a_create_race(cloudflare_client, cloudflare_sim):
    await parent(cloudflare_client)
    cloudflare_sim.sim.inject_fault("POST", "*/workers/workers/*/previews", status=502, after=True, times=1)
    lost = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-20")
    # another replica created pr-21 between our GET and our POST: the sim answers our POST 409
    cloudflare_sim.sim.inject_fault("POST", "*/workers/workers/*/previews", status=409, error_code=10026,
                                    after=True, times=1)
    raced = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-21")
    assert (lost.name, raced.name) == ("pr-20", "pr-21") and cloudflare_sim.sim.creates["preview"] == 2


async def test_preview_health_can_be_set_per_deployment(cloudflare_client, cloudflare_sim, cloudflare_http):
    await parent(cloudflare_client)
    preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, WORKER, "pr-22")
    deployment = await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, WORKER, preview, metadata(),
                                                           [WorkerModule("index.js", MAIN)])
    cloudflare_sim.sim.set_worker_health(f"{preview.slug}-{WORKER}", "failing", version_id=deployment.id)
    answer = await cloudflare_http.get(preview.url + "/health")
    assert answer.status_code == 500 and answer.json()["status"] == "failing"
