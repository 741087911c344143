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
        return ApiTokenStore(self.app[SERVICES].database)

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
