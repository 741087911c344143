"""HTTP face of the simulated Worker Previews (state and rules in `previews.py`).

Registered by `app.make_app` before the catch-all route. The Preview is named in the path by
its id or its percent-encoded name (wrangler: `feature%2Flogin`), so it is read from the raw
path, not from aiohttp's decoded match.
"""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from bot.sim.cloudflare.app import METADATA, MODULES, PREFIX, SIM, _account, _body, envelope
from bot.sim.cloudflare.state import SimError

preview_routes = web.RouteTableDef()
W = PREFIX + "/accounts/{account_id}/workers/workers"
PV = W + "/{worker_name}/previews/{preview}"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _preview_id(request: web.Request) -> str:
    """The `{preview}` segment as sent (percent-decoded once), from the raw path."""
    raw = request.raw_path.split("?", 1)[0]
    tail = raw.split("/previews/", 1)[1]
    return unquote(tail.split("/", 1)[0])


@preview_routes.post(W)
async def create_worker(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    return envelope(request.app[SIM].previews.create_worker(account, _body(request)))


@preview_routes.get(W + "/{worker_name}")
async def get_worker(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    return envelope(request.app[SIM].previews.get_worker(account, request.match_info["worker_name"]))


@preview_routes.patch(W + "/{worker_name}")
async def patch_worker(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    return envelope(request.app[SIM].previews.patch_worker(account, request.match_info["worker_name"],
                                                           _body(request)))


@preview_routes.post(W + "/{worker_name}/previews")
async def create_preview(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    return envelope(request.app[SIM].previews.create_preview(
        account, request.match_info["worker_name"], _body(request),
        ignore_base_config=request.query.get("ignore_base_config") == "true", origin=_origin(request)))


@preview_routes.get(PV)
async def get_preview(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    return envelope(request.app[SIM].previews.get_preview(account, request.match_info["worker_name"],
                                                          _preview_id(request), _origin(request)))


@preview_routes.patch(PV)
async def patch_preview(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    return envelope(request.app[SIM].previews.patch_preview(account, request.match_info["worker_name"],
                                                            _preview_id(request), _body(request), _origin(request)))


@preview_routes.delete(PV)
async def delete_preview(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    request.app[SIM].previews.delete_preview(account, request.match_info["worker_name"], _preview_id(request))
    return envelope(None)


@preview_routes.post(PV + "/deployments")
async def create_deployment(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    if METADATA not in request:
        raise SimError(400, 10021, "a Preview deployment is multipart/form-data with a metadata part")
    return envelope(request.app[SIM].previews.create_deployment(
        account, request.match_info["worker_name"], _preview_id(request), request[METADATA], request[MODULES],
        _origin(request)))


@preview_routes.get(PV + "/deployments/{deployment}")
async def get_deployment(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:read")
    return envelope(request.app[SIM].previews.get_deployment(
        account, request.match_info["worker_name"], _preview_id(request), request.match_info["deployment"],
        _origin(request)))


@preview_routes.patch(PV + "/deployments/{deployment}")
async def patch_deployment(request: web.Request) -> web.Response:
    account = _account(request, "workers_scripts:edit")
    return envelope(request.app[SIM].previews.patch_deployment(
        account, request.match_info["worker_name"], _preview_id(request), request.match_info["deployment"],
        _body(request), _origin(request)))
