"""Every error leaves as the seed's envelope, with a correlation id echoed back."""

from aiohttp import web

from bot.errors import CATALOGUE, FlareshipError
from handlers.http import envelope_middleware, json_success


def _app():
    app = web.Application(middlewares=[envelope_middleware])

    async def ok(request):
        return json_success({"hello": "world"})

    async def quota(request):
        raise FlareshipError("DEPLOY_002", "Worker limit reached", step="Checking resources and quotas")

    async def boom(request):
        raise RuntimeError("secret internals")

    app.router.add_get("/ok", ok)
    app.router.add_get("/quota", quota)
    app.router.add_get("/boom", boom)
    return app


async def test_success_envelope_and_caller_correlation_id(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/ok", headers={"X-Request-ID": "req-123"})
    body = await resp.json()
    assert resp.status == 200
    assert body["success"] is True and body["data"] == {"hello": "world"}
    assert body["metadata"]["correlationId"] == "req-123" == resp.headers["X-Correlation-ID"]
    assert body["metadata"]["version"] == "1.0.0"


async def test_catalogue_error_maps_to_status_and_envelope(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/quota")
    body = await resp.json()
    assert resp.status == 402
    err = body["error"]
    assert err["code"] == "DEPLOY_002" and err["message"] == "Worker limit reached"
    assert err["details"]["step"] == "Checking resources and quotas"
    assert err["details"]["correlationId"] == resp.headers["X-Correlation-ID"]
    assert err["retryable"] is False and err["suggestedAction"]


async def test_unknown_route_wrong_method_and_crash_are_enveloped(aiohttp_client):
    client = await aiohttp_client(_app())
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "SYS_005"
    resp = await client.post("/ok")
    assert resp.status == 405 and (await resp.json())["error"]["code"] == "SYS_006"
    resp = await client.get("/boom")
    body = await resp.json()
    assert resp.status == 500 and body["error"]["code"] == "SYS_001"
    assert "secret internals" not in await resp.text()


def test_catalogue_holds_the_seed_codes_and_the_additions():
    seed = [f"AUTH_00{i}" for i in range(1, 6)] + [f"DEPLOY_00{i}" for i in range(1, 8)] + [f"SYS_00{i}" for i in range(1, 6)]
    added = ["DEPLOY_008", "DEPLOY_009", "DEPLOY_010", "DEPLOY_011", "DEPLOY_012", "AUTH_006", "AUTH_007", "SYS_006"]
    assert set(seed + added) <= set(CATALOGUE)
    assert CATALOGUE["DEPLOY_011"].status == 424 and CATALOGUE["AUTH_007"].status == 401
