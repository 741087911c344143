"""HTTP face of the simulated KV/D1/R2/queue listings, secrets, schedules, zones and route/domain deletes.

Registered by `app.make_app` before the catch-all route; the state lives in `storage.py` and
`state.py`. Answers use the shapes of bot/sim/specs/cloudflare-openapi-subset.json.
"""

from __future__ import annotations

from aiohttp import web

from bot.sim.cloudflare.app import (
    JSON_BODY,
    PREFIX,
    SIM,
    _account,
    _body,
    _paged,
    _token,
    envelope,
)
from bot.sim.cloudflare.state import SimError

storage_routes = web.RouteTableDef()
P = PREFIX
A = P + "/accounts/{account_id}"
S = A + "/workers/scripts/{script_name}"


@storage_routes.get(A + "/storage/kv/namespaces")
async def list_kv(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    return _paged(request, request.app[SIM].storage.list_of("kv", account.id))


@storage_routes.get(A + "/d1/database")
async def list_d1(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    items = request.app[SIM].storage.list_of("d1", account.id)
    name = request.query.get("name")
    return _paged(request, [d for d in items if not name or d["name"] == name])


@storage_routes.get(A + "/r2/buckets")
async def list_r2(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    items = request.app[SIM].storage.list_of("r2", account.id)
    contains = request.query.get("name_contains")
    return envelope({"buckets": [b for b in items if not contains or contains in b["name"]]})


@storage_routes.get(A + "/queues")
async def list_queues(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    return envelope(request.app[SIM].storage.list_of("queues", account.id))


@storage_routes.get(A + "/queues/{queue_id}/consumers")
async def list_consumers(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    queue = request.app[SIM].storage.queue_by_id(account.id, request.match_info["queue_id"])
    return envelope(list(queue["consumers"]))


@storage_routes.post(A + "/queues/{queue_id}/consumers")
async def add_consumer(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    body = _body(request)
    sim._script(account.id, str(body.get("script_name") or ""))
    return envelope(sim.storage.add_consumer(account.id, request.match_info["queue_id"], body))


@storage_routes.put(A + "/queues/{queue_id}/consumers/{consumer_id}")
async def update_consumer(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    body = _body(request)
    return envelope(sim.storage.update_consumer(account.id, request.match_info["queue_id"],
                                                request.match_info["consumer_id"], body))


@storage_routes.get(S + "/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    sim._script(account.id, request.match_info["script_name"])
    return envelope(sim.storage.secret_names(account.id, request.match_info["script_name"]))


@storage_routes.put(S + "/secrets")
async def put_secret(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    sim._script(account.id, request.match_info["script_name"])
    return envelope(sim.storage.put_secret(account.id, request.match_info["script_name"], _body(request)))


@storage_routes.get(S + "/schedules")
async def get_schedules(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    sim._script(account.id, request.match_info["script_name"])
    return envelope({"schedules": sim.storage.schedules.get((account.id, request.match_info["script_name"]), [])})


@storage_routes.put(S + "/schedules")
async def put_schedules(request: web.Request) -> web.Response:
    """Replaces every cron trigger of the Worker (the body is `[{cron}]`)."""
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    sim._script(account.id, request.match_info["script_name"])
    body = request.get(JSON_BODY)
    if not isinstance(body, list) or not all(isinstance(c, dict) and isinstance(c.get("cron"), str) for c in body):
        raise SimError(400, 10021, "the body is a list of {cron} objects")
    now = sim.now()
    schedules = [{"cron": c["cron"], "created_on": now, "modified_on": now} for c in body]
    sim.storage.schedules[(account.id, request.match_info["script_name"])] = schedules
    return envelope({"schedules": schedules})


@storage_routes.get(P + "/zones")
async def list_zones(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    token = _token(request)
    sim._usable(token)
    name = request.query.get("name")
    account_id = request.query.get("account.id")
    zones = [{"id": z["id"], "name": z["name"], "status": "active", "account": {"id": z["account_id"]}}
             for z in sim.zones.values() if z["account_id"] in token.account_ids
             and (not name or z["name"] == name) and (not account_id or z["account_id"] == account_id)]
    return _paged(request, zones)


@storage_routes.delete(P + "/zones/{zone_id}/workers/routes/{route_id}")
async def delete_route(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    sim._zone(_token(request), request.match_info["zone_id"])
    route = sim.routes.get(request.match_info["route_id"])
    if route is None or route["zone_id"] != request.match_info["zone_id"]:
        raise SimError(404, 10020, "route not found")
    del sim.routes[route["id"]]
    return envelope({"id": route["id"]})


@storage_routes.delete(A + "/workers/domains/{domain_id}")
async def delete_domain(request: web.Request) -> web.Response:
    sim = request.app[SIM]
    account = _account(request, "workers_routes:edit")
    domain = sim.domains.get(request.match_info["domain_id"])
    if domain is None or sim.zones.get(domain["zone_id"], {}).get("account_id") != account.id:
        raise SimError(404, 100114, "domain not found")
    del sim.domains[domain["id"]]
    return envelope(None)
