"""The simulated Cloudflare's Worker Previews over raw HTTP: spec validation, per-Preview Durable
Object namespaces (isolated from the parent and from each other), serving, base config, deployment
PATCH, the 10007/10025/10222/10032 answers and what a delete leaves behind."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, CF_TOKEN

WORKER = "my-app"
MAIN = b"export class Counter {}\nexport default { fetch() { return new Response('ok') } }\n"
W = f"/accounts/{CF_ACCOUNT_ID}/workers/workers"


class Raw:
    """Requests exactly as written, and the envelope back."""

    def __init__(self, http: httpx.AsyncClient, server):
        self.http, self.server = http, server

    async def __call__(self, method: str, path: str, *, json_body=None, files=None, params=None,
                       content_type: str | None = None):
        headers = {"Authorization": f"Bearer {CF_TOKEN}"}
        content = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = content_type or "application/json"
        response = await self.http.request(method, self.server.url + path, content=content, files=files,
                                           params=params, headers=headers)
        return response.status_code, response.json()

    async def deploy(self, preview: str, metadata: dict, modules: dict[str, bytes] | None = None):
        files: list[tuple[str, tuple]] = [("metadata", (None, json.dumps(metadata).encode()))]
        for name, content in (modules or {"index.js": MAIN}).items():
            files.append(("files", (name, content, "application/javascript+module")))
        return await self("POST", f"{W}/{WORKER}/previews/{preview}/deployments", files=files)


@pytest.fixture
async def raw(cloudflare_sim, cloudflare_http):
    return Raw(cloudflare_http, cloudflare_sim)


def first_metadata(**extra):
    return {"main_module": "index.js", "compatibility_date": "2025-09-01",
            "migrations": {"new_tag": "v1", "steps": [{"new_sqlite_classes": ["Counter"]}]},
            "env": {"COUNTER": {"type": "durable_object_namespace", "class_name": "Counter"}}, **extra}


async def parent_script(cloudflare_client):
    """The parent Worker as Flareship deploys it: a script with its own Counter namespace, on workers.dev."""
    await cloudflare_client.upload_worker(
        CF_ACCOUNT_ID, WORKER, {"index.js": MAIN}, main_module="index.js", compatibility_date="2025-09-01",
        bindings=[{"type": "durable_object_namespace", "name": "COUNTER", "class_name": "Counter"}],
        migrations={"new_tag": "v1", "steps": [{"new_sqlite_classes": ["Counter"]}]})
    await cloudflare_client.enable_script_subdomain(CF_ACCOUNT_ID, WORKER)


async def new_preview(raw, name: str) -> dict:
    status, body = await raw("POST", f"{W}/{WORKER}/previews", json_body={"name": name})
    assert status == 200, body
    return body["result"]


async def test_worker_and_preview_missing_answer_10007_and_10025(raw):
    status, body = await raw("GET", f"{W}/{WORKER}/previews/pr-1")
    assert status == 404 and body["errors"][0]["code"] == 10007
    status, body = await raw("POST", f"{W}/{WORKER}/previews", json_body={"name": "pr-1"})
    assert status == 404 and body["errors"][0]["code"] == 10007
    status, body = await raw("POST", W, json_body={"name": WORKER, "subdomain": {"enabled": True,
                                                                                  "previews_enabled": True}})
    assert status == 200 and body["result"]["name"] == WORKER
    for method in ("GET", "DELETE"):
        status, body = await raw(method, f"{W}/{WORKER}/previews/pr-1")
        assert status == 404 and body["errors"][0]["code"] == 10025 and body["success"] is False


async def test_requests_the_spec_refuses_are_400(raw, cloudflare_client, cloudflare_sim):
    await parent_script(cloudflare_client)
    refused = [
        ("POST", f"{W}/{WORKER}/previews", {"name": "pr-1", "bogus": True}, None),
        ("POST", f"{W}/{WORKER}/previews", {"name": ""}, None),
        ("POST", W, {"name": "x"}, None),  # subdomain is required
        ("PATCH", f"{W}/{WORKER}", {"previews_base_config": {"env": {"S": {"type": "plain_text", "text": "1"}}}},
         "application/merge-patch+json"),
    ]
    for method, path, body, content_type in refused:
        status, answer = await raw(method, path, json_body=body, content_type=content_type)
        assert status == 400 and answer["errors"][0]["code"] == 6007, (path, body, answer)
    status, answer = await raw("POST", f"{W}/{WORKER}/previews", json_body={"name": "pr-1"},
                               params={"ignore_base_config": "false"})
    assert status == 400 and answer["errors"][0]["code"] == 6007
    await new_preview(raw, "pr-1")
    for metadata in ({**first_metadata(), "bindings": []},  # a script upload's key, not a Preview's
                     {**first_metadata(), "keep_bindings": ["secret_text"]},
                     first_metadata(compatibility_date="Sept 2025"),
                     first_metadata(migrations={"new_tag": "v1", "steps": []})):
        status, answer = await raw.deploy("pr-1", metadata)
        assert status == 400 and answer["errors"][0]["code"] == 6007, (metadata, answer)
    assert cloudflare_sim.sim.creates["preview_deployment"] == 0
    status, answer = await raw.deploy("pr-1", first_metadata())
    assert status == 200, answer


async def test_modules_travel_as_files_parts(raw, cloudflare_client):
    await parent_script(cloudflare_client)
    await new_preview(raw, "pr-2")
    files = [("metadata", (None, json.dumps(first_metadata()).encode())),
             ("index.js", ("index.js", MAIN, "application/javascript+module"))]
    status, answer = await raw("POST", f"{W}/{WORKER}/previews/pr-2/deployments", files=files)
    assert status == 400 and "files parts" in answer["errors"][0]["message"]
    status, answer = await raw.deploy("pr-2", first_metadata(main_module="missing.js"))
    assert status == 400 and answer["errors"][0]["code"] == 10021


async def test_each_preview_has_its_own_durable_object_namespaces(raw, cloudflare_client, cloudflare_sim,
                                                                   cloudflare_http):
    await parent_script(cloudflare_client)
    parent_ns = next(ns.id for ns in cloudflare_sim.sim.namespaces.values() if ns.script == WORKER)
    served = {}
    for name in ("pr-1", "pr-2"):
        preview = await new_preview(raw, name)
        # Even a binding that names the parent's namespace gets the Preview's own.
        metadata = first_metadata()
        metadata["env"]["COUNTER"]["namespace_id"] = parent_ns
        status, answer = await raw.deploy(name, metadata)
        assert status == 200, answer
        served[name] = (await cloudflare_http.get(preview["urls"][0])).json()["durable_objects"]["COUNTER"]
    assert len({parent_ns, served["pr-1"], served["pr-2"]}) == 3
    # the Previews' namespaces are not the account's (nor the parent Worker's)
    listed = {ns["id"] for ns in await cloudflare_client.list_durable_object_namespaces(CF_ACCOUNT_ID)}
    assert listed == {parent_ns}
    # a second deployment of a Preview keeps its storage
    status, answer = await raw.deploy("pr-1", first_metadata(migrations={
        "old_tag": "v1", "new_tag": "v2", "steps": [{"new_sqlite_classes": ["Other"]}]}),
        {"index.js": MAIN + b"export class Other {}\n"})
    assert status == 200, answer
    preview = cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, WORKER, "pr-1")
    assert preview.namespaces["Counter"] == served["pr-1"] and preview.migration_tag == "v2"


async def test_a_binding_without_a_migration_is_refused_per_preview(raw, cloudflare_client):
    await parent_script(cloudflare_client)  # the parent has Counter: the Preview still needs its migration
    await new_preview(raw, "pr-3")
    metadata = first_metadata()
    del metadata["migrations"]
    status, answer = await raw.deploy("pr-3", metadata)
    assert status == 400 and answer["errors"][0]["code"] == 10061


async def test_delete_removes_deployments_namespaces_and_urls(raw, cloudflare_client, cloudflare_sim,
                                                              cloudflare_http):
    await parent_script(cloudflare_client)
    preview = await new_preview(raw, "feature/login")
    assert preview["slug"] == "feature-login" and preview["urls"][0].endswith("/feature-login-my-app")
    status, deployment = await raw.deploy("feature%2Flogin", first_metadata())
    assert status == 200
    deployment_url = deployment["result"]["urls"][0]
    assert (await cloudflare_http.get(deployment_url)).status_code == 200
    status, body = await raw("DELETE", f"{W}/{WORKER}/previews/feature%2Flogin")
    assert status == 200 and body["result"] is None
    assert cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, WORKER, "feature/login") is None
    for url in (preview["urls"][0], deployment_url):
        assert (await cloudflare_http.get(url)).status_code == 404
    for path in ("", "/deployments/latest"):
        status, body = await raw("GET", f"{W}/{WORKER}/previews/{preview['id']}{path}")
        assert status == 404 and body["errors"][0]["code"] == 10025
    # the parent Worker still serves
    assert (await cloudflare_http.get(cloudflare_sim.workers_url_template.format(
        subdomain="flareship-sim", script=WORKER))).status_code == 200


async def test_deployments_latest_by_id_and_patch(raw, cloudflare_client, cloudflare_http):
    await parent_script(cloudflare_client)
    preview = await new_preview(raw, "pr-4")
    status, body = await raw("GET", f"{W}/{WORKER}/previews/pr-4/deployments/latest")
    assert status == 404 and body["errors"][0]["code"] == 10222
    patch = {"env": {"TOKEN": {"type": "secret_text", "text": "t"}}, "annotations": {"workers/message": "m"}}
    status, body = await raw("PATCH", f"{W}/{WORKER}/previews/pr-4/deployments/latest", json_body=patch,
                             content_type="application/merge-patch+json")
    assert status == 404 and body["errors"][0]["code"] == 10032
    _, first = await raw.deploy(preview["id"], first_metadata(annotations={"workers/tag": "abc"}))
    first = first["result"]
    status, by_id = await raw("GET", f"{W}/{WORKER}/previews/pr-4/deployments/{first['id']}")
    assert status == 200 and by_id["result"]["id"] == first["id"] and by_id["result"]["migration_tag"] == "v1"
    status, patched = await raw("PATCH", f"{W}/{WORKER}/previews/pr-4/deployments/latest", json_body=patch,
                                content_type="application/merge-patch+json")
    assert status == 200, patched
    patched = patched["result"]
    assert patched["id"] != first["id"] and patched["env"]["TOKEN"] == {"type": "secret_text"}  # no text back
    assert patched["annotations"] == {"workers/tag": "abc", "workers/message": "m"}
    served = (await cloudflare_http.get(preview["urls"][0])).json()
    assert served["deployment_id"] == patched["id"] and served["secrets"] == ["TOKEN"]
    status, _ = await raw("PATCH", f"{W}/{WORKER}/previews/pr-4/deployments/latest",
                          json_body={"env": {"TOKEN": None}}, content_type="application/merge-patch+json")
    assert status == 400  # the spec requires annotations too


async def test_base_config_secrets_reach_previews_unless_ignored(raw, cloudflare_client, cloudflare_http):
    await parent_script(cloudflare_client)
    status, worker = await raw("PATCH", f"{W}/{WORKER}", json_body={
        "previews_base_config": {"env": {"SHARED": {"type": "secret_text", "text": "s"}}}},
        content_type="application/merge-patch+json")
    assert status == 200 and worker["result"]["previews_base_config"]["env"] == {"SHARED": {"type": "secret_text"}}
    with_base = await new_preview(raw, "pr-5")
    status, answer = await raw("POST", f"{W}/{WORKER}/previews", json_body={"name": "pr-6"},
                               params={"ignore_base_config": "true"})
    assert status == 200, answer
    without = answer["result"]
    for preview in (with_base, without):
        status, _ = await raw.deploy(preview["name"], first_metadata())
        assert status == 200
    assert (await cloudflare_http.get(with_base["urls"][0])).json()["secrets"] == ["SHARED"]
    assert (await cloudflare_http.get(without["urls"][0])).json()["secrets"] == []
    status, worker = await raw("PATCH", f"{W}/{WORKER}", json_body={"previews_base_config": {"env": {"SHARED": None}}},
                               content_type="application/merge-patch+json")
    assert status == 200 and worker["result"]["previews_base_config"]["env"] == {}


async def test_patch_preview_settings(raw, cloudflare_client):
    await parent_script(cloudflare_client)
    await new_preview(raw, "pr-7")
    status, body = await raw("PATCH", f"{W}/{WORKER}/previews/pr-7", json_body={"logpush": True})
    assert status == 200 and body["result"]["logpush"] is True
    status, body = await raw("PATCH", f"{W}/{WORKER}/previews/pr-7", json_body={})
    assert status == 400  # minProperties: 1
    status, body = await raw("PATCH", f"{W}/{WORKER}/previews/pr-7", json_body={"name": "renamed"})
    assert status == 400  # a Preview's name cannot change


async def test_deleting_the_parent_script_takes_its_previews(raw, cloudflare_client, cloudflare_sim, cloudflare_http):
    await parent_script(cloudflare_client)
    preview = await new_preview(raw, "pr-8")
    await raw.deploy("pr-8", first_metadata())
    await cloudflare_client.delete_script(CF_ACCOUNT_ID, WORKER)
    assert cloudflare_sim.sim.previews.previews == {}
    assert (await cloudflare_http.get(preview["urls"][0])).status_code == 404
    status, body = await raw("GET", f"{W}/{WORKER}/previews/pr-8")
    assert status == 404 and body["errors"][0]["code"] == 10007
