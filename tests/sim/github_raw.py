"""Raw HTTP against the simulated GitHub (no gidgethub in between), for the simulator's own tests."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt as pyjwt

from bot.github.app import load_private_key
from tests.plugins.github_sim import INSTALLATION_ID

#: The head commit of the pull request the simulator tests open.
HEAD = "b" * 40


class Api:
    """Raw HTTP against the simulator, to see exactly what GitHub would answer."""

    def __init__(self, session: aiohttp.ClientSession, server):
        self.session = session
        self.server = server
        self.token: str | None = None

    def jwt(self, *, key: str | None = None, iat_offset: int = -60, lifetime: int = 600, iss=None) -> str:
        now = int(time.time()) + iat_offset
        return pyjwt.encode({"iat": now, "exp": now + lifetime, "iss": str(iss or self.server.app_id)},
                            load_private_key(key or self.server.app_private_key), algorithm="RS256")

    async def mint(self, installation_id: int = INSTALLATION_ID, body: dict | None = None) -> tuple[int, dict]:
        return await self.request("POST", f"/app/installations/{installation_id}/access_tokens", json_body=body,
                                  auth=f"Bearer {self.jwt()}")

    async def login(self, **kwargs) -> str:
        status, data = await self.mint(**kwargs)
        assert status == 201, data
        self.token = data["token"]
        return self.token

    async def request(self, method: str, path: str, *, json_body=None, auth: str | None = None,
                      headers: dict | None = None, raw: bool = False):
        all_headers = {"Accept": "application/vnd.github+json", **(headers or {})}
        if auth is None and self.token:
            auth = f"token {self.token}"
        if auth:
            all_headers["Authorization"] = auth
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        url = path if path.startswith("http") else self.server.url + path
        async with self.session.request(method, url, data=data, headers=all_headers, allow_redirects=False) as r:
            body = await r.read()
            if raw:
                return r.status, r.headers, body
            return r.status, (json.loads(body) if body else None)
