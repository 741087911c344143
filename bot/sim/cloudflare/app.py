"""HTTP face of the simulated Cloudflare: the API under /client/v4, deployed Workers under
/__workers/{subdomain}/{script}/... (a Worker Preview at /__workers/{subdomain}/{slug}-{worker}), and a
built-in OCI registry under /v2/.

One middleware does what every API call shares: latency, fault injection, auth header parsing,
OpenAPI validation against the two Cloudflare spec files, the envelope and the request log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.sim.cloudflare.faults import FaultInjector
from bot.sim.cloudflare.previews import PreviewDeploymentState, PreviewState
from bot.sim.cloudflare.state import CloudflareSim, Module, SimError
from bot.sim.cloudflare.validation import PREFIX, SpecViolation, UnknownRoute, validate_request
from bot.sim.registry import RegistryState, make_registry_routes

log = logging.getLogger("flareship.sim.cloudflare")

SIM = web.AppKey("cloudflare_sim", CloudflareSim)
REGISTRY = web.AppKey("cloudflare_sim_registry", RegistryState)
#: What the middleware parsed from the body, for the handlers.
METADATA = web.RequestKey("metadata", dict)
MODULES = web.RequestKey("modules", dict)
JSON_BODY = web.RequestKey("json", object)


def envelope(result, *, result_info=None, messages=None, status: int = 200, headers=None) -> web.Response:
    body = {"success": True, "errors": [], "messages": messages or [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return web.json_response(body, status=status, headers=headers)


def failure(status: int, code: int, message: str, headers=None) -> web.Response:
    return web.json_response({"success": False, "errors": [{"code": code, "message": message}], "messages": [],
                              "result": None}, status=status, headers=headers)


def _api_path(request: web.Request) -> str | None:
    path = request.path
    return path[len(PREFIX):] if path.startswith(PREFIX + "/") else None


def _reset(request: web.Request) -> web.Response:
    """Drop the connection without an answer (the client sees a reset / disconnect)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError  # aiohttp ends the handler quietly on a closed connection


@web.middleware
async def registry_fault_middleware(request: web.Request, handler):
    """Faults and latency for the built-in registry too (patterns match the full `/v2/...` path);
    errors use the OCI shape: `{errors: [{code: TOOMANYREQUESTS|UNAVAILABLE, ...}]}`."""
    if not request.path.startswith("/v2/"):
        return await handler(request)
    sim: CloudflareSim = request.app[SIM]
    delay = sim.faults.latency_for(request.method, request.path)
    if delay:
        await sim.stall(delay)
    fault = sim.faults.take(request.method, request.path)
    if fault is None:
        return await handler(request)
    response = None
    if fault.after:
        response = await handler(request)
    if fault.delay:
        await sim.stall(fault.delay)
    if fault.reset:
        return _reset(request)
    if fault.status or fault.error_code is not None:
        status, _code, message, headers = fault.error()
        code = "TOOMANYREQUESTS" if status == 429 else ("UNAVAILABLE" if status >= 500 else "DENIED")
        return web.json_response({"errors": [{"code": code, "message": message, "detail": None}]}, status=status,
                                 headers=headers)
    return response or web.json_response({"errors": [{"code": "UNAVAILABLE", "message": "timeout"}]}, status=504)


@web.middleware
async def cloudflare_middleware(request: web.Request, handler):
    api_path = _api_path(request)
    if api_path is None:
        return await handler(request)
    sim: CloudflareSim = request.app[SIM]
    faults: FaultInjector = sim.faults
    delay = faults.latency_for(request.method, api_path)
    if delay:
        await sim.stall(delay)
    status = 500
    try:
        limited = sim.rate_limit_check(request.headers.get("Authorization"))
        if limited is not None:
            status = 429
            return failure(429, 971, "Please wait and consider throttling your request speed",
                           {"Retry-After": str(limited), **sim.rate_limit_headers(request.headers.get("Authorization"))})
        fault = faults.take(request.method, api_path)
        if fault is not None and not fault.after:
            if fault.delay:
                await sim.stall(fault.delay)
            if fault.reset:
                status = 0
                return _reset(request)
            if fault.status or fault.error_code is not None:
                status, code, message, headers = fault.error()
                return failure(status, code, message, headers)
            status = 504
            return failure(504, 10013, "Gateway timeout (injected)")
        try:
            await _prepare(request, api_path)
            response = await handler(request)
        except SimError as exc:
            response = failure(exc.status, exc.code, exc.message, exc.headers)
        except UnknownRoute:
            response = failure(404, 7000, "No route for that URI")
        except SpecViolation as exc:
            response = failure(400, 6007, f"Request does not match the Cloudflare API: {exc.reason}")
        except web.HTTPNotFound:
            response = failure(404, 7000, "No route for that URI")
        except web.HTTPMethodNotAllowed:
            response = failure(405, 7001, "Method not allowed for this route")
        status = response.status
        if fault is not None:  # after=True: the work is done, the answer is lost
            if fault.delay:
                await sim.stall(fault.delay)
            if fault.reset:
                status = 0
                return _reset(request)
            if fault.status or fault.error_code is not None:
                status, code, message, headers = fault.error()
                return failure(status, code, message, headers)
        response.headers.update(sim.rate_limit_headers(request.headers.get("Authorization")))
        return response
    finally:
        sim.requests.append((request.method, api_path, status))


#: A Worker Preview deployment names every module part `files` (the module name is the filename).
FILES_PART = "files"


def _is_preview_deployment(api_path: str) -> bool:
    return "/workers/workers/" in api_path and api_path.rstrip("/").endswith("/deployments")


async def _read_parts(request: web.Request, *, by_filename: bool = False) -> dict[str, Module]:
    """Every part of a multipart body by name (`by_filename`: `files` parts by their filename, as a
    Preview deployment sends them); a malformed body is Cloudflare's 400, not a 500."""
    parts: dict[str, Module] = {}
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise SimError(400, 10021, "nested multipart bodies are not accepted")
            data = bytes(await part.read(decode=False))
            name = part.name or ""
            if by_filename and name == FILES_PART:
                name = part.filename or ""
                if not name or name == "metadata":
                    raise SimError(400, 10021, "a files part needs a filename (the module name)")
            elif by_filename and name != "metadata":
                raise SimError(400, 10021, f"unexpected part {name!r}: modules are sent as files parts")
            if name in parts:
                raise SimError(400, 10021, f"duplicate part {name!r}")
            parts[name] = Module(name, part.headers.get("Content-Type", "application/octet-stream").split(";")[0],
                                 data)
    except (HttpProcessingError, ValueError, AssertionError) as exc:
        raise SimError(400, 10021, f"malformed multipart body: {type(exc).__name__}") from None
    return parts


async def _prepare(request: web.Request, api_path: str) -> None:
    """Read the body once (JSON or multipart) and check the request against the spec."""
    sim: CloudflareSim = request.app[SIM]
    body: bytes | None = None
    metadata = None
    if request.content_type.startswith("multipart/"):
        parts = await _read_parts(request, by_filename=_is_preview_deployment(api_path))
        if api_path.endswith("/workers/assets/upload"):  # parts named by hash (bot/sim/cloudflare/assets.py)
            request[MODULES] = parts
            parts, meta_part = {}, None
        else:
            meta_part = parts.pop("metadata", None)
            if meta_part is None:
                raise SimError(400, 10021, "multipart upload without a metadata part")
        if meta_part is not None:
            try:
                metadata = json.loads(meta_part.content)
            except ValueError:
                raise SimError(400, 10021, "metadata part is not JSON") from None
            request[METADATA] = metadata
            request[MODULES] = parts
    elif request.can_read_body:
        body = await request.read()
        if body:
            try:
                request[JSON_BODY] = json.loads(body)
            except ValueError:
                raise SimError(400, 6007, "Malformed JSON in request body") from None
    if sim.validate_requests:
        # A Preview is named by its percent-encoded name (`feature%2Flogin`): one path segment.
        path = request.raw_path.split("?", 1)[0] if "/workers/workers/" in api_path else request.path
        validate_request(host_url=f"{request.scheme}://{request.host}", path=path, method=request.method,
                         query=request.query, headers=request.headers, content_type=request.content_type or "",
                         body=body, metadata=metadata)


# -- helpers ------------------------------------------------------------------------------


def _token(request: web.Request):
    return request.app[SIM].authenticate(request.headers.get("Authorization"))


def _account(request: web.Request, permission: str | None):
    sim = request.app[SIM]
    token = _token(request)
    return sim.account_for(token, request.match_info["account_id"], permission)


def _paged(request: web.Request, items: list) -> web.Response:
    try:
        page = max(1, int(request.query.get("page", 1)))
        per_page = max(1, min(1000, int(request.query.get("per_page", 1000))))
    except ValueError:
        raise SimError(400, 1001, "page and per_page must be integers") from None
    chunk = items[(page - 1) * per_page: page * per_page]
    total_pages = max(1, -(-len(items) // per_page))
    return envelope(chunk, result_info={"page": page, "per_page": per_page, "count": len(chunk),
                                        "total_count": len(items), "total_pages": total_pages})


def _body(request: web.Request) -> dict:
    body = request.get(JSON_BODY)
    if not isinstance(body, dict):
        raise SimError(400, 6007, "a JSON object body is required")
    return body


# -- handlers ------------------------------------------------------------------------------

routes = web.RouteTableDef()
P = PREFIX
A = P + "/accounts/{account_id}"
S = A + "/workers/scripts/{script_name}"


@routes.get(P + "/user/tokens/verify")
async def verify_user_token(request):
    sim = request.app[SIM]
    return envelope(sim.verify_user_token(_token(request)),
                    messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}])


@routes.get(A + "/tokens/verify")
async def verify_account_token(request):
    sim = request.app[SIM]
    return envelope(sim.verify_account_token(_token(request), request.match_info["account_id"]),
                    messages=[{"code": 10000, "message": "This API Token is valid and active", "type": None}])


@routes.get(P + "/user")
async def get_user(request):
    sim = request.app[SIM]
    token = _token(request)
    if token.kind == "account":
        raise SimError(401, 1000, "Invalid API Token")
    sim._usable(token)
    if not token.allows("user_details:read"):
        # As Cloudflare answers a token without User Details Read; wrangler's whoami takes 9109
        # to mean "no email" (https://github.com/cloudflare/workers-sdk, packages/wrangler/src/user/whoami.ts).
        raise SimError(403, 9109, "Unauthorized to access requested resource")
    return envelope({"id": "sim-user-" + token.id[:8], "email": "sim@flareship.test", "suspended": False})


@routes.get(P + "/user/tokens/{token_id}")
async def get_user_token(request):
    """Reading a token's policies needs API Tokens Read (9109 otherwise), which is why the
    engine probes instead."""
    sim = request.app[SIM]
    token = _token(request)
    if token.kind == "account":
        raise SimError(401, 1000, "Invalid API Token")
    sim._usable(token)
    if not token.allows("api_tokens:read"):
        raise SimError(403, 9109, "Unauthorized to access requested resource")
    target = next((t for t in sim.tokens.values() if t.id == request.match_info["token_id"]), None)
    if target is None or target.value != token.value:
        raise SimError(404, 1003, "token not found")
    return envelope({"id": target.id, "name": "sim token", "status": target.status, "policies": [
        {"id": "p1", "effect": "allow",
         "resources": {f"com.cloudflare.api.account.{a}": "*" for a in sorted(target.account_ids)},
         "permission_groups": [{"id": p, "name": p} for p in sorted(target.permissions)]}]})


@routes.get(P + "/memberships")
async def memberships(request):
    sim = request.app[SIM]
    token = _token(request)
    if token.kind == "account":
        raise SimError(403, 10001, "Account API tokens cannot list memberships")
    sim._usable(token)
    return _paged(request, [{"id": sim.new_id(), "status": "accepted",
                             "account": {"id": a, "name": sim.accounts[a].name}}
                            for a in sorted(token.account_ids) if a in sim.accounts])


@routes.get(P + "/accounts")
async def list_accounts(request):
    sim = request.app[SIM]
    token = _token(request)
    return _paged(request, [sim.account_public(sim.accounts[a]) for a in sorted(token.account_ids)
                            if a in sim.accounts])


@routes.get(A)
async def get_account(request):
    return envelope(request.app[SIM].account_public(_account(request, "account_settings:read")))


@routes.get(P + "/accounts/{account_id}/subscriptions")
async def subscriptions(request):
    return envelope(_account(request, "billing:read").subscriptions)


@routes.get(A + "/workers/account-settings")
async def account_settings(request):
    _account(request, "workers_scripts:read")
    return envelope({"default_usage_model": "standard", "green_compute": False})


@routes.get(A + "/workers/scripts")
async def list_scripts(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope([s.public() for (acc, _), s in sorted(sim.scripts.items()) if acc == account.id])


@routes.put(S)
async def upload_script(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    if METADATA not in request:
        raise SimError(400, 10021, "a module Worker is uploaded as multipart/form-data with a metadata part")
    return envelope(sim.upload_script(account, request.match_info["script_name"], request[METADATA],
                                      request[MODULES]))


@routes.get(S)
async def get_script(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    script = sim._script(account.id, request.match_info["script_name"])
    version = script.version(script.live_version_id() or "")
    main = version.modules.get(version.metadata.get("main_module")) if version else None
    return web.Response(body=main.content if main else b"", content_type="application/javascript")


@routes.delete(S)
async def delete_script(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    sim.delete_script(account, request.match_info["script_name"])
    return envelope(None)


@routes.get(A + "/workers/services/{script_name}")
async def get_service(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope(sim.get_service(account, request.match_info["script_name"]))


@routes.get(S + "/versions")
async def list_versions(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope(sim.list_versions(account, request.match_info["script_name"]))


@routes.post(S + "/versions")
async def upload_version(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    if METADATA not in request:
        raise SimError(400, 10021, "a version is uploaded as multipart/form-data with a metadata part")
    return envelope(sim.upload_version(account, request.match_info["script_name"], request[METADATA],
                                       request[MODULES]))


@routes.get(S + "/versions/{version_id}")
async def get_version(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope(sim.get_version(account, request.match_info["script_name"], request.match_info["version_id"]))


@routes.get(S + "/deployments")
async def list_deployments(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope(sim.list_deployments(account, request.match_info["script_name"]))


@routes.post(S + "/deployments")
async def create_deployment(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    force = request.query.get("force", "false").lower() == "true"
    return envelope(sim.create_deployment(account, request.match_info["script_name"], _body(request), force=force))


@routes.get(A + "/workers/subdomain")
async def get_subdomain(request):
    sim = request.app[SIM]
    return envelope(sim.get_account_subdomain(_account(request, "workers_scripts:read")))


@routes.put(A + "/workers/subdomain")
async def put_subdomain(request):
    sim = request.app[SIM]
    return envelope(sim.put_account_subdomain(_account(request, "workers_scripts:edit"), _body(request)))


@routes.get(S + "/subdomain")
async def get_script_subdomain(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return envelope(sim.script_subdomain(account, request.match_info["script_name"]))


@routes.post(S + "/subdomain")
async def post_script_subdomain(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:edit")
    # The 2025-08-01 behaviour is asked for by header (spec26); remember what the client sent.
    sim.script_api_dates.append(request.headers.get("Cloudflare-Workers-Script-Api-Date"))
    return envelope(sim.script_subdomain(account, request.match_info["script_name"], _body(request)))


@routes.get(P + "/zones/{zone_id}/workers/routes")
async def list_routes(request):
    sim = request.app[SIM]
    return envelope([{k: v for k, v in r.items() if k != "zone_id"}
                     for r in sim.list_routes(_token(request), request.match_info["zone_id"])])


@routes.post(P + "/zones/{zone_id}/workers/routes")
async def create_route(request):
    sim = request.app[SIM]
    return envelope(sim.create_route(_token(request), request.match_info["zone_id"], _body(request)))


@routes.put(P + "/zones/{zone_id}/workers/routes/{route_id}")
async def update_route(request):
    sim = request.app[SIM]
    return envelope(sim.update_route(_token(request), request.match_info["zone_id"], request.match_info["route_id"],
                                     _body(request)))


@routes.get(A + "/workers/domains")
async def list_domains(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    q = request.query
    return envelope([d for d in sim.domains.values() if sim.zones.get(d["zone_id"], {}).get("account_id") == account.id
                     and (not q.get("hostname") or d["hostname"] == q["hostname"])
                     and (not q.get("service") or d["service"] == q["service"])])


@routes.put(A + "/workers/domains")
async def put_domain(request):
    sim = request.app[SIM]
    return envelope(sim.put_domain(_account(request, "workers_routes:edit"), _body(request)))


@routes.get(A + "/workers/durable_objects/namespaces")
async def list_namespaces(request):
    sim = request.app[SIM]
    account = _account(request, "workers_scripts:read")
    return _paged(request, [ns.public() for ns in sim.namespaces.values() if ns.account_id == account.id])


C = A + "/containers"


@routes.get(C + "/me")
async def containers_me(request):
    sim = request.app[SIM]
    return envelope(sim.containers_me(_account(request, "containers:read")))


@routes.post(C + "/registries/{domain}/credentials")
async def registry_credentials(request):
    sim = request.app[SIM]
    account = _account(request, "containers:edit")
    return envelope(sim.registry_credentials(account, request.match_info["domain"], _body(request)))


@routes.get(C + "/applications")
async def list_applications(request):
    sim = request.app[SIM]
    account = _account(request, "containers:read")
    return envelope(sim.list_applications(account, request.query.get("name")))


@routes.post(C + "/applications")
async def create_application(request):
    sim = request.app[SIM]
    return envelope(sim.create_application(_account(request, "containers:edit"), _body(request)))


@routes.get(C + "/applications/{application_id}")
async def get_application(request):
    sim = request.app[SIM]
    return envelope(sim._application(_account(request, "containers:read"), request.match_info["application_id"]))


@routes.patch(C + "/applications/{application_id}")
async def patch_application(request):
    sim = request.app[SIM]
    return envelope(sim.patch_application(_account(request, "containers:edit"), request.match_info["application_id"],
                                          _body(request)))


@routes.delete(C + "/applications/{application_id}")
async def delete_application(request):
    sim = request.app[SIM]
    return envelope(sim.delete_application(_account(request, "containers:edit"),
                                           request.match_info["application_id"]))


@routes.post(C + "/applications/{application_id}/rollouts")
async def create_rollout(request):
    sim = request.app[SIM]
    return envelope(sim.create_rollout(_account(request, "containers:edit"), request.match_info["application_id"],
                                       _body(request)))


@routes.get(C + "/applications/{application_id}/rollouts/{rollout_id}")
async def get_rollout(request):
    sim = request.app[SIM]
    return envelope(sim.get_rollout(_account(request, "containers:read"), request.match_info["application_id"],
                                    request.match_info["rollout_id"]))


@routes.route("*", P + "/{tail:.*}")
async def unknown_route(request):
    raise SimError(404, 7000, "No route for that URI")


# -- deployed Workers -------------------------------------------------------------------------


async def serve_worker(request: web.Request) -> web.Response:
    """What `https://{script}.{subdomain}.workers.dev/...` would answer, for the deployed version."""
    sim = request.app[SIM]
    preview = sim.previews.find_served(request.match_info["subdomain"], request.match_info["script"])
    if preview is not None:
        return await serve_preview(request, *preview)
    served = sim.find_served(request.match_info["subdomain"], request.match_info["script"])
    if served is None:
        return web.Response(status=404, text="There is nothing here yet")
    script, version = served
    from bot.sim.cloudflare.assets import serve_asset  # it imports this module's helpers

    asset = serve_asset(sim, version.metadata, "/" + request.match_info.get("tail", ""))
    if asset is not None:
        return asset
    health = sim.health_of(script.name, version.id)
    if health == "slow":
        await sim.stall(sim.slow_seconds)
    body = {"script": script.name, "version_id": version.id, "version_number": version.number,
            "path": "/" + request.match_info.get("tail", ""), "status": health,
            "containers": sim.container_images(script)}
    return web.json_response(body, status=500 if health == "failing" else 200)


async def serve_preview(request: web.Request, preview: PreviewState,
                        deployment: PreviewDeploymentState) -> web.Response:
    """What a Preview URL (its latest deployment) or a deployment URL answers: like a Worker, plus
    the Durable Object namespaces its bindings reach (the Preview's own). Its health is set with
    `sim.set_worker_health("<slug>-<worker>", ..., version_id=<deployment id>)`."""
    sim = request.app[SIM]
    from bot.sim.cloudflare.assets import serve_asset

    asset = serve_asset(sim, deployment.metadata, "/" + request.match_info.get("tail", ""))
    if asset is not None:
        return asset
    health = sim.health_of(preview.label, deployment.id)
    if health == "slow":
        await sim.stall(sim.slow_seconds)
    main = deployment.modules.get(deployment.metadata.get("main_module", ""))
    body = {"script": preview.worker, "preview": preview.name, "preview_id": preview.id,
            "deployment_id": deployment.id, "deployment_number": deployment.number,
            "path": "/" + request.match_info.get("tail", ""), "status": health,
            "main_module_sha256": hashlib.sha256(main.content).hexdigest() if main else None,
            "annotations": deployment.annotations,
            "durable_objects": {name: b.get("namespace_id") for name, b in deployment.env.items()
                                if b.get("type") == "durable_object_namespace"},
            "vars": {name: b.get("text") if b.get("type") == "plain_text" else b.get("json")
                     for name, b in deployment.env.items() if b.get("type") in ("plain_text", "json")},
            "secrets": sorted(name for name, b in deployment.env.items() if b.get("type") in ("secret_text",
                                                                                              "secret_key"))}
    return web.json_response(body, status=500 if health == "failing" else 200)


def _registry_authorizer(sim: CloudflareSim):
    def authorize(request: web.Request, action: str, repository: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        if user != "v1":
            return False
        if not repository:  # GET /v2/: any valid credential
            return password in sim.registry_passwords
        return sim.check_registry_password(password, action, repository)

    return authorize


def make_app(sim: CloudflareSim, *, registry: RegistryState | None = None) -> web.Application:
    """The simulator's aiohttp application (API + Workers + registry)."""
    if sim.faults is None:
        sim.faults = FaultInjector()
    app = web.Application(middlewares=[registry_fault_middleware, cloudflare_middleware], client_max_size=64 * 1024 * 1024)
    app[SIM] = sim
    app[REGISTRY] = registry or RegistryState()
    app.router.add_route("*", "/__workers/{subdomain}/{script}", serve_worker)
    app.router.add_route("*", "/__workers/{subdomain}/{script}/{tail:.*}", serve_worker)
    app.add_routes(make_registry_routes(app[REGISTRY], _registry_authorizer(sim)))
    from bot.sim.cloudflare.assets import assets_routes
    from bot.sim.cloudflare.preview_routes import preview_routes
    from bot.sim.cloudflare.storage_routes import storage_routes  # it imports this module's helpers

    app.add_routes(storage_routes)  # before `routes`, whose last route catches every other path
    app.add_routes(preview_routes)
    app.add_routes(assets_routes)
    app.add_routes(routes)
    return app
