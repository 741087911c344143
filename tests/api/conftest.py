"""REST API fixtures: the real app (init_app) on a migrated database, plus API tokens to call it with."""

from __future__ import annotations

import pytest

from bot.services import SERVICES
from bot.store.api_tokens import ApiTokenStore


class ApiClient:
    """A pytest-aiohttp client plus helpers to mint tokens and send authenticated calls."""

    def __init__(self, client):
        self.client = client
        self.app = client.server.app

    @property
    def tokens(self) -> ApiTokenStore:
        return self.app[SERVICES].api_tokens

    async def token(self, *scopes: str, name: str = "test", expires_in=None) -> str:
        _, plaintext = await self.tokens.create(name=name, scopes=list(scopes), expires_in=expires_in)
        return plaintext

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, path, headers=headers, **kwargs)

    async def call(self, method: str, path: str, *, token: str | None = None, **kwargs):
        resp = await self.request(method, path, token=token, **kwargs)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp, body


@pytest.fixture
async def make_api(make_flareship_client):
    """`await make_api(**settings_overrides)` -> ApiClient on the real, started app."""

    async def make(**overrides) -> ApiClient:
        return ApiClient(await make_flareship_client(**overrides))

    return make


@pytest.fixture
async def api(make_api) -> ApiClient:
    return await make_api()


@pytest.fixture
async def sim_env():
    """The engine area's harness: simulated Cloudflare (API, served Workers, account registry) +
    a source registry holding `acme/app:1`."""
    from tests.engine.harness import start_sim_env

    env = await start_sim_env()
    try:
        yield env
    finally:
        await env.close()


def cloudflare_settings(env) -> dict:
    from pydantic import SecretStr

    from tests.engine.harness import ACCOUNT_ID, TOKEN

    return {
        "cloudflare_api_url": env.api_url,
        "cloudflare_api_token": SecretStr(TOKEN),
        "cloudflare_account_id": ACCOUNT_ID,
        "container_registry_url": env.base,
        "workers_url_template": env.workers_url_template,
        "environment_overrides": {},
    }


@pytest.fixture
async def deploy_api(make_api, sim_env) -> ApiClient:
    """The real app wired to the simulated Cloudflare; fast SSE polling for tests."""
    api = await make_api(**cloudflare_settings(sim_env), sse_poll_seconds=0.05, sse_keepalive_seconds=0.3,
                         sse_write_timeout_seconds=5)
    api.sim_env = sim_env
    return api


def app_config(env, name: str = "shop", **extra) -> dict:
    return {"appName": name, "containerImage": env.image(), "durableObjects": ["AppContainer"],
            "environmentVars": {"MODE": "test"}, **extra}


async def wait_final(api: ApiClient, token: str, deployment_id: str, timeout: float = 30.0) -> dict:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        resp, body = await api.call("GET", f"/deploy/{deployment_id}/status", token=token)
        assert resp.status == 200, body
        if body["data"]["status"] in ("completed", "failed", "rolled_back", "cancelled"):
            return body["data"]
        assert loop.time() < deadline, body
        await asyncio.sleep(0.05)
