"""A Cloudflare token posted to /deploy/validate or /auth/cloudflare/verify is used for that call only:
it is not in the database file, the captured logs (records and formatted output), or any response."""

from __future__ import annotations

import io
import logging
import secrets
from pathlib import Path

import pytest

from bot.logs import configure_logging
from tests.engine.harness import ACCOUNT_ID


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)  # one backend is enough here
async def test_cloudflare_token_is_never_stored_logged_or_echoed(deploy_api, database_url, caplog):
    api, env = deploy_api, deploy_api.sim_env
    good = "cfsecret" + secrets.token_hex(16)
    bad = "cfbadsecret" + secrets.token_hex(16)
    env.sim.add_token(good, account_ids=[ACCOUNT_ID])
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream=stream)
    caplog.set_level(logging.DEBUG)
    try:
        token = await api.token("deploy:staging")
        bodies = []
        for cf_token in (good, bad):
            resp, _body = await api.call("POST", "/deploy/validate", token=token, json={
                "environment": "staging", "credentials": {"cloudflareApiToken": cf_token, "accountId": ACCOUNT_ID}})
            bodies.append(await resp.text())
            resp, _body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                         json={"apiToken": cf_token, "requiredScopes": ["Nope:Nope:Edit"]})
            bodies.append(await resp.text())
        assert '"valid":true' in bodies[0].replace(" ", "")  # the good token really validated
        # A deployment afterwards writes plenty to the database and logs.
        resp, _body = await api.call("POST", "/deploy/prepare", token=token, json={
            "environment": "staging", "config": {"appName": "shop", "containerImage": env.image(),
                                                 "durableObjects": ["AppContainer"]}})
        assert resp.status == 200
    finally:
        logging.getLogger().removeHandler(handler)
    raw_logs = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    path = database_url.split("///", 1)[1]
    files = b"".join(Path(p).read_bytes() for p in (path, path + "-wal", path + "-shm") if Path(p).exists())
    assert len(files) > 0 and stream.getvalue()
    for secret in (good, bad):
        assert secret.encode() not in files
        assert secret not in stream.getvalue()
        assert secret not in raw_logs
        assert all(secret not in b for b in bodies)
