"""The simulated Cloudflare's bound resources, secrets, schedules, routes and domains (as the API behaves)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID as ACC
from tests.plugins.cloudflare_sim import CF_TOKEN

AUTH = {"Authorization": f"Bearer {CF_TOKEN}"}
MAIN = b"export default { fetch() { return new Response('ok') } }\n"


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def upload(metadata: dict) -> list:
    return [("metadata", ("metadata.json", json.dumps({"main_module": "index.js", "compatibility_date": "2025-09-01",
                                                        **metadata}).encode(), "application/json")),
            ("index.js", ("index.js", MAIN, "application/javascript+module"))]


def error_of(response: httpx.Response) -> tuple[int, int, str]:
    body = response.json()
    assert body["success"] is False
    return response.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


async def test_bindings_to_missing_resources_are_refused(cloudflare_sim, http):
    base = f"{cloudflare_sim.url}/accounts/{ACC}/workers/scripts/app"
    storage = cloudflare_sim.sim.storage
    kv = storage.add_kv_namespace(ACC, "cache")
    db = storage.add_d1_database(ACC, "main")
    storage.add_r2_bucket(ACC, "files")
    storage.add_queue(ACC, "jobs")
    ok = [{"name": "KV", "type": "kv_namespace", "namespace_id": kv["id"]},
          {"name": "DB", "type": "d1", "id": db["uuid"]},
          {"name": "FILES", "type": "r2_bucket", "bucket_name": "files"},
          {"name": "JOBS", "type": "queue", "queue_name": "jobs"}]
    r = await http.put(base, headers=AUTH, files=upload({"bindings": ok}))
    assert r.status_code == 200, r.text
    for bad, code in [({"name": "KV", "type": "kv_namespace", "namespace_id": "nope"}, 10042),
                      ({"name": "DB", "type": "d1", "id": "nope"}, 10181),
                      ({"name": "FILES", "type": "r2_bucket", "bucket_name": "nope"}, 10085),
                      ({"name": "JOBS", "type": "queue", "queue_name": "nope"}, 11003)]:
        r = await http.put(base, headers=AUTH, files=upload({"bindings": [bad]}))
        status, got, message = error_of(r)
        assert (status, got) == (400, code) and "'nope' is not valid" in message
    r = await http.get(f"{cloudflare_sim.url}/accounts/{ACC}/storage/kv/namespaces", headers=AUTH)
    assert [n["title"] for n in r.json()["result"]] == ["cache"]
    r = await http.get(f"{cloudflare_sim.url}/accounts/{ACC}/r2/buckets", headers=AUTH)
    assert [b["name"] for b in r.json()["result"]["buckets"]] == ["files"]
    r = await http.get(f"{cloudflare_sim.url}/accounts/{ACC}/d1/database", headers=AUTH)
    assert [d["uuid"] for d in r.json()["result"]] == [db["uuid"]]
    r = await http.get(f"{cloudflare_sim.url}/accounts/{ACC}/queues", headers=AUTH)
    assert [q["queue_name"] for q in r.json()["result"]] == ["jobs"]


async def test_an_upload_without_keep_bindings_drops_the_secrets(cloudflare_sim, http):
    base = f"{cloudflare_sim.url}/accounts/{ACC}/workers/scripts/app"
    assert (await http.put(base, headers=AUTH, files=upload({}))).status_code == 200
    r = await http.put(f"{base}/secrets", headers=AUTH, json={"name": "API_KEY", "text": "s3cret", "type": "secret_text"})
    assert r.status_code == 200 and r.json()["result"] == {"name": "API_KEY", "type": "secret_text"}
    r = await http.put(base, headers=AUTH, files=upload({"keep_bindings": ["secret_text", "secret_key"]}))
    assert r.status_code == 200
    names = (await http.get(f"{base}/secrets", headers=AUTH)).json()["result"]
    assert names == [{"name": "API_KEY", "type": "secret_text"}]
    script = cloudflare_sim.sim.script(ACC, "app")
    assert {"name": "API_KEY", "type": "secret_text"} in script.versions[-1].bindings
    assert (await http.put(base, headers=AUTH, files=upload({}))).status_code == 200
    assert (await http.get(f"{base}/secrets", headers=AUTH)).json()["result"] == []


async def test_schedules_routes_and_domains_have_state(cloudflare_sim, http):
    sim = cloudflare_sim.sim
    base = f"{cloudflare_sim.url}/accounts/{ACC}/workers/scripts/app"
    assert (await http.put(base, headers=AUTH, files=upload({}))).status_code == 200
    r = await http.put(f"{base}/schedules", headers=AUTH, json=[{"cron": "*/5 * * * *"}])
    assert [s["cron"] for s in r.json()["result"]["schedules"]] == ["*/5 * * * *"]
    r = await http.get(f"{base}/schedules", headers=AUTH)
    assert [s["cron"] for s in r.json()["result"]["schedules"]] == ["*/5 * * * *"]
    r = await http.put(f"{base}/schedules", headers=AUTH, json={"cron": "x"})
    assert error_of(r)[0] == 400
    sim.add_zone("a" * 32, "example.com", ACC)
    r = await http.get(f"{cloudflare_sim.url}/zones", headers=AUTH, params={"name": "example.com"})
    assert [z["id"] for z in r.json()["result"]] == ["a" * 32]
    r = await http.post(f"{cloudflare_sim.url}/zones/{'a' * 32}/workers/routes", headers=AUTH,
                        json={"pattern": "example.com/*", "script": "app"})
    route_id = r.json()["result"]["id"]
    r = await http.delete(f"{cloudflare_sim.url}/zones/{'a' * 32}/workers/routes/{route_id}", headers=AUTH)
    assert r.status_code == 200 and sim.routes == {}
    r = await http.put(f"{cloudflare_sim.url}/accounts/{ACC}/workers/domains", headers=AUTH, json={
        "hostname": "app.example.com", "service": "app", "zone_id": "a" * 32, "environment": "production"})
    domain_id = r.json()["result"]["id"]
    r = await http.delete(f"{cloudflare_sim.url}/accounts/{ACC}/workers/domains/{domain_id}", headers=AUTH)
    assert r.status_code == 200 and sim.domains == {}


async def test_queue_consumers(cloudflare_sim, http):
    queue = cloudflare_sim.sim.storage.add_queue(ACC, "jobs")
    base = f"{cloudflare_sim.url}/accounts/{ACC}"
    assert (await http.put(f"{base}/workers/scripts/app", headers=AUTH, files=upload({}))).status_code == 200
    body = {"script_name": "app", "type": "worker", "settings": {"batch_size": 10}}
    r = await http.post(f"{base}/queues/{queue['queue_id']}/consumers", headers=AUTH, json=body)
    assert r.status_code == 200, r.text
    r = await http.post(f"{base}/queues/{queue['queue_id']}/consumers", headers=AUTH, json=body)
    assert error_of(r)[0] == 409
    r = await http.get(f"{base}/queues/{queue['queue_id']}/consumers", headers=AUTH)
    assert [c["script"] for c in r.json()["result"]] == ["app"]
