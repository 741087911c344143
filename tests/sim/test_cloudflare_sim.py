"""The simulated Cloudflare itself: spec validation, auth codes, faults, served Workers, registry."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from bot.sim.registry import build_test_image, digest_of, seed_image
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID as ACC
from tests.plugins.cloudflare_sim import CF_TOKEN

AUTH = {"Authorization": f"Bearer {CF_TOKEN}"}
MAIN = b"export class AppContainer {}\nexport default { fetch() { return new Response('ok') } }\n"


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=2) as client:
        yield client


def error_of(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    assert body["success"] is False and body["result"] is None
    return response.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


def upload_files(metadata: dict, modules: dict[str, tuple[bytes, str]]):
    files = [("metadata", ("metadata.json", json.dumps(metadata).encode(), "application/json"))]
    files += [(name, (name, content, ctype)) for name, (content, ctype) in modules.items()]
    return files


async def test_requests_are_checked_against_the_spec(cloudflare_sim, http):
    base = f"{cloudflare_sim.url}/accounts/{ACC}"
    r = await http.post(f"{base}/containers/applications", headers=AUTH,
                        json={"name": "x", "scheduling_policy": "default", "configuration": {"image": "i"}, "bogus": 1})
    status, code, message = error_of(r)
    assert (status, code) == (400, 6007) and "bogus" in message
    r = await http.patch(f"{base}/containers/applications/abc", headers=AUTH, json={"name": "renamed"})
    assert error_of(r)[:2] == (400, 6007)
    r = await http.post(f"{base}/workers/scripts/app/deployments", headers=AUTH,
                        json={"strategy": "percentage", "versions": [{"version_id": "v"}]})
    assert error_of(r)[:2] == (400, 6007)
    r = await http.put(f"{base}/workers/scripts/Bad_Name", headers=AUTH,
                       files=upload_files({"main_module": "index.js"}, {"index.js": (MAIN, "application/javascript+module")}))
    status, code, message = error_of(r)
    assert (status, code) == (400, 6007) and "script_name" in message
    r = await http.put(f"{base}/workers/scripts/app", headers=AUTH,
                       files=upload_files({"main_module": 5}, {"index.js": (MAIN, "application/javascript+module")}))
    status, code, message = error_of(r)
    assert (status, code) == (400, 6007) and "main_module" in message
    r = await http.get(f"{cloudflare_sim.url}/nowhere", headers=AUTH)
    assert error_of(r)[:2] == (404, 7000)
    r = await http.post(f"{base}/containers/applications", headers={**AUTH, "Content-Type": "application/json"},
                        content=b"{not json")
    assert error_of(r)[:2] == (400, 6007)


async def test_documented_drift_is_accepted(cloudflare_sim, http):
    base = f"{cloudflare_sim.url}/accounts/{ACC}"
    metadata = {"main_module": "index.js", "compatibility_date": "2025-09-01",
                "bindings": [{"type": "durable_object_namespace", "name": "C", "class_name": "AppContainer"}],
                "migrations": {"new_tag": "v1", "steps": [{"new_sqlite_classes": ["AppContainer"]}]},
                "containers": [{"class_name": "AppContainer"}], "annotations": {"workers/message": "hi"},
                "observability": {"enabled": True}}
    r = await http.put(f"{base}/workers/scripts/app", headers=AUTH,
                       files=upload_files(metadata, {"index.js": (MAIN, "application/javascript+module")}))
    assert r.status_code == 200, r.text
    r = await http.get(f"{base}/workers/durable_objects/namespaces", headers=AUTH)
    assert r.json()["result"][0]["use_sqlite"] is True
    r = await http.put(f"{base}/workers/subdomain", headers=AUTH, json={"subdomain": "flareship-sim"})
    assert r.json()["result"] == {"subdomain": "flareship-sim"}


async def test_upload_part_names_are_the_modules(cloudflare_sim, http):
    base = f"{cloudflare_sim.url}/accounts/{ACC}/workers/scripts/app"
    r = await http.put(base, headers=AUTH, files=upload_files(
        {"main_module": "index.js", "compatibility_date": "2025-09-01"},
        {"src/index.js": (MAIN, "application/javascript+module")}))
    status, code, message = error_of(r)
    assert (status, code) == (400, 10021) and "index.js" in message
    r = await http.put(base, headers=AUTH, files=[("index.js", ("index.js", MAIN, "application/javascript+module"))])
    assert error_of(r)[1] == 10021  # no metadata part
    r = await http.put(base, headers=AUTH, files=upload_files(
        {"main_module": "index.js", "compatibility_date": "2025-09-01"},
        {"index.js": (MAIN, "application/x-shellscript")}))
    assert error_of(r)[1] == 10021


async def test_auth_errors_use_cloudflare_codes(cloudflare_sim, http):
    sim = cloudflare_sim.sim
    base = f"{cloudflare_sim.url}/accounts/{ACC}"
    assert error_of(await http.get(base))[:2] == (400, 6003)
    assert error_of(await http.get(base, headers={"Authorization": "Bearer nope-nope-nope"}))[:2] == (401, 9106)
    assert error_of(await http.get(f"{cloudflare_sim.url}/accounts/{'f' * 32}", headers=AUTH))[:2] == (403, 10000)
    assert error_of(await http.get(f"{cloudflare_sim.url}/accounts/not-hex", headers=AUTH))[:2] == (404, 7003)
    sim.add_token("cfat_account_token_123456789", [ACC])
    cfat = {"Authorization": "Bearer cfat_account_token_123456789"}
    assert error_of(await http.get(f"{cloudflare_sim.url}/user/tokens/verify", headers=cfat))[:2] == (401, 1000)
    r = await http.get(f"{base}/tokens/verify", headers=cfat)
    assert r.json()["result"]["status"] == "active"
    sim.add_token("read-only-token-123456789", [ACC], {"workers_scripts:read"})
    ro = {"Authorization": "Bearer read-only-token-123456789"}
    assert (await http.get(f"{base}/workers/scripts", headers=ro)).status_code == 200
    assert error_of(await http.get(f"{base}/containers/me", headers=ro))[:2] == (403, 10000)
    sim.add_token("disabled-token-123456789", [ACC], status="disabled")
    off = {"Authorization": "Bearer disabled-token-123456789"}
    assert (await http.get(f"{cloudflare_sim.url}/user/tokens/verify", headers=off)).json()["result"]["status"] \
        == "disabled"
    bad = await http.get(f"{base}/workers/scripts", headers=off)
    assert error_of(bad)[:2] == (401, 9106) and "disabled-token" not in bad.text


async def test_fault_kinds(cloudflare_sim, http):
    sim = cloudflare_sim.sim
    url = f"{cloudflare_sim.url}/accounts/{ACC}"
    sim.inject_fault("GET", "/accounts/*", status=429, retry_after=3)
    r = await http.get(url, headers=AUTH)
    assert r.status_code == 429 and r.headers["retry-after"] == "3" and r.json()["errors"][0]["code"] == 971
    sim.inject_fault("GET", "/accounts/*", error_code=10075)
    assert error_of(await http.get(url, headers=AUTH))[:2] == (403, 10075)
    sim.inject_fault("GET", "/accounts/*", reset=True)
    with pytest.raises(httpx.TransportError):
        await http.get(url, headers=AUTH)
    sim.inject_fault("GET", "/accounts/*", delay=1.0)
    with pytest.raises(httpx.ReadTimeout):
        await http.get(url, headers=AUTH, timeout=0.2)
    sim.inject_fault("*", "re:/accounts/[0-9a-f]{32}", status=503, times=2)
    assert (await http.get(url, headers=AUTH)).status_code == 503
    assert (await http.get(url, headers=AUTH)).status_code == 503
    assert (await http.get(url, headers=AUTH)).status_code == 200
    with pytest.raises(ValueError):
        sim.inject_fault("GET", "/x")


async def test_fault_after_the_work_loses_only_the_answer(cloudflare_sim, http):
    sim = cloudflare_sim.sim
    sim.inject_fault("PUT", "/accounts/*/workers/subdomain", status=500, after=True)
    r = await http.put(f"{cloudflare_sim.url}/accounts/{ACC}/workers/subdomain", headers=AUTH,
                       json={"subdomain": "renamed-sub"})
    assert r.status_code == 500
    assert sim.accounts[ACC].subdomain == "renamed-sub"


async def test_request_log_and_counts(cloudflare_sim, http):
    await http.get(f"{cloudflare_sim.url}/accounts/{ACC}", headers=AUTH)
    assert cloudflare_sim.sim.requests[-1] == ("GET", f"/accounts/{ACC}", 200)
    assert cloudflare_sim.sim.count_requests("GET", "/accounts/") == 1


async def test_sim_registry_rejects_bad_pushes(cloudflare_sim, http):
    state = cloudflare_sim.registry
    image = build_test_image("reg")
    seed_image(state, f"{ACC}/app", "v1", image)
    base = cloudflare_sim.registry_url
    creds = cloudflare_sim.sim.registry_credentials(cloudflare_sim.sim.accounts[ACC], cloudflare_sim.registry_host,
                                                    {"permissions": ["push", "pull"], "expiration_minutes": 5})
    auth = httpx.BasicAuth("v1", creds["password"])
    r = await http.get(f"{base}/v2/{ACC}/app/manifests/v1", auth=auth,
                       headers={"Accept": image.media_type})
    assert r.status_code == 200 and r.content == image.manifest and r.headers["docker-content-digest"] == image.digest
    r = await http.post(f"{base}/v2/{ACC}/app/blobs/uploads/", auth=auth,
                        params={"digest": "sha256:" + "0" * 64}, content=b"abc")
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    missing = json.dumps({"schemaVersion": 2, "mediaType": image.media_type,
                          "config": {"mediaType": "x", "digest": digest_of(b"nope"), "size": 4}, "layers": []})
    r = await http.put(f"{base}/v2/{ACC}/app/manifests/v2", auth=auth, content=missing,
                       headers={"Content-Type": image.media_type})
    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    r = await http.put(f"{base}/v2/{ACC}/app/manifests/v3", auth=auth, content=image.manifest,
                       headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    r = await http.get(f"{base}/v2/{ACC}/app/manifests/v1")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")


async def test_no_token_in_logs(cloudflare_sim, cloudflare_client, caplog):
    caplog.set_level(logging.DEBUG)
    cloudflare_sim.sim.inject_fault("GET", "/accounts/*", status=500, times=None)
    with pytest.raises(Exception) as err:
        await cloudflare_client.get_account(ACC)
    assert CF_TOKEN not in caplog.text and CF_TOKEN not in str(err.value) and CF_TOKEN not in repr(cloudflare_client)
    assert "cloudflare GET" in caplog.text  # the retries were logged, just not the token


async def test_token_details_need_api_tokens_read(cloudflare_sim, http):
    sim = cloudflare_sim.sim
    sim.add_token("deploy-only-token-123456789", [ACC], {"workers_scripts:edit"})
    deploy_only = {"Authorization": "Bearer deploy-only-token-123456789"}
    token_id = (await http.get(f"{cloudflare_sim.url}/user/tokens/verify", headers=deploy_only)).json()["result"]["id"]
    r = await http.get(f"{cloudflare_sim.url}/user/tokens/{token_id}", headers=deploy_only)
    assert error_of(r)[:2] == (403, 9109)
    own_id = (await http.get(f"{cloudflare_sim.url}/user/tokens/verify", headers=AUTH)).json()["result"]["id"]
    r = await http.get(f"{cloudflare_sim.url}/user/tokens/{own_id}", headers=AUTH)
    assert f"com.cloudflare.api.account.{ACC}" in r.json()["result"]["policies"][0]["resources"]
    sim.add_token("cfat_memberships_123456789", [ACC])
    r = await http.get(f"{cloudflare_sim.url}/memberships",
                       headers={"Authorization": "Bearer cfat_memberships_123456789"})
    assert error_of(r)[:2] == (403, 10001)
    r = await http.get(f"{cloudflare_sim.url}/memberships", headers=AUTH)
    assert r.json()["result"][0]["account"]["id"] == ACC


async def test_sim_registry_routes_every_oci_operation(http):
    """Each operation of oci-distribution-subset.json reaches a registry handler (JSON errors,
    never the router's 404/405)."""
    from pathlib import Path

    from bot.sim.registry import start_registry

    spec = json.loads((Path(__file__).resolve().parents[2] / "bot/sim/specs/oci-distribution-subset.json")
                      .read_text())
    registry = await start_registry()
    image = build_test_image("oci")
    seed_image(registry.state, "acme/app", "v1", image)
    values = {"name": "acme/app", "reference": "v1", "digest": digest_of(image.config), "session_id": "unknown"}
    try:
        for path, item in spec["paths"].items():
            for method in item:
                if method == "parameters":
                    continue
                url = registry.url + path.format(**values)
                response = await http.request(method.upper(), url, content=b"{}" if method in ("put", "post") else None,
                                              headers={"Content-Type": image.media_type})
                assert response.status_code != 405, f"{method} {path}"
                if response.status_code == 404:
                    assert response.json()["errors"][0]["code"] in {"BLOB_UNKNOWN", "MANIFEST_UNKNOWN",
                                                                     "NAME_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"}
    finally:
        await registry.close()
