"""API tokens: hashed storage, expiry, revocation, rotation, the scope matrix and the CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.api_auth import ScopeError, allows, hash_token, parse_scopes
from bot.store.api_tokens import ApiTokenStore


def test_scope_matrix_pure():
    assert allows(["read"], "read")
    assert not allows(["read"], "deploy", "staging")
    assert allows(["deploy:staging"], "deploy", "staging")
    assert allows(["deploy:staging"], "rollback", "staging")
    assert not allows(["deploy:staging"], "deploy", "production")
    assert not allows(["deploy:staging"], "read")
    assert not allows(["deploy:staging"], "admin")
    assert all(allows(["admin"], a, "production") for a in ("read", "deploy", "retry", "admin", "cancel"))


def test_parse_scopes_rejects_unknown():
    assert parse_scopes(["read", "read", "deploy:staging"]) == ["read", "deploy:staging"]
    for bad in (["root"], ["deploy:"], ["deploy:Prod!"], []):
        with pytest.raises(ScopeError):
            parse_scopes(bad)


async def test_store_keeps_only_hashes(database, database_url):
    store = ApiTokenStore(database)
    record, plaintext = await store.create(name="ci", scopes=["read", "deploy:staging"], expires_in=timedelta(days=3))
    assert plaintext.startswith("fls_") and len(plaintext) > 40
    assert (await store.authenticate(plaintext)).id == record.id
    assert await store.authenticate(plaintext + "x") is None
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[1]
        await database.close()
        raw = b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if Path(p).exists())
        assert plaintext.encode() not in raw
        assert hash_token(plaintext).encode() in raw or b"api_tokens" in raw


async def test_expired_revoked_and_rotated_tokens(database):
    clock = {"now": __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").timezone.utc)}
    store = ApiTokenStore(database, clock=lambda: clock["now"])
    record, plaintext = await store.create(name="short", scopes=["read"], expires_in=timedelta(days=1))
    assert await store.authenticate(plaintext) is not None
    clock["now"] += timedelta(days=2)
    assert await store.authenticate(plaintext) is None

    record, plaintext = await store.create(name="rot", scopes=["admin"])
    new, new_plain = await store.rotate(record)
    assert await store.authenticate(plaintext) is None
    assert (await store.authenticate(new_plain)).scopes == ("admin",)
    assert await store.revoke(new.id) is True
    assert await store.revoke(new.id) is False
    assert await store.authenticate(new_plain) is None
    names = [t.name for t in await store.list()]
    assert names.count("rot") == 2


# -- over HTTP ------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/deployments"),
    ("GET", "/deploy/dep_x/status"),
    ("GET", "/deploy/dep_x/logs"),
    ("POST", "/deploy/validate"),
    ("POST", "/deploy/prepare"),
    ("POST", "/deploy"),
    ("POST", "/deploy/dep_x/rollback"),
    ("POST", "/deploy/dep_x/retry"),
    ("POST", "/deploy/dep_x/cancel"),
    ("POST", "/auth/github-app/token"),
    ("POST", "/auth/cloudflare/verify"),
    ("POST", "/auth/tokens/refresh"),
    ("POST", "/auth/permissions/validate"),
    ("GET", "/metrics/deployments"),
    ("GET", "/metrics/errors"),
    ("GET", "/metrics/resources"),
    ("GET", "/auth/tokens"),
]


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_every_protected_endpoint_needs_a_valid_token(api):
    revoked_record, revoked = await api.tokens.create(name="old", scopes=["admin"])
    await api.tokens.revoke(revoked_record.id)
    for method, path in PROTECTED:
        for header in (None, "Bearer", "Basic abc", f"Bearer {revoked}", "Bearer fls_nottherealtokenatall1234"):
            headers = {"Authorization": header} if header else {}
            resp = await api.client.request(method, path, headers=headers, json={})
            body = await resp.json()
            assert resp.status == 401, (method, path, header, body)
            assert body["error"]["code"] == "AUTH_007"
            assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_public_endpoints_need_no_token(api):
    for path in ("/healthz", "/health/deployment", "/openapi.json", "/metrics"):
        resp = await api.client.get(path)
        assert resp.status == 200, path


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_expired_token_is_refused(api):
    _record, plaintext = await api.tokens.create(name="x", scopes=["read"], expires_in=timedelta(seconds=-1))
    resp, body = await api.call("GET", "/metrics/resources", token=plaintext)
    assert resp.status == 401 and body["error"]["code"] == "AUTH_007"


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_scope_matrix_over_http(api):
    read = await api.token("read")
    staging = await api.token("deploy:staging")
    admin = await api.token("admin")
    validate = {"environment": "staging", "credentials": {"cloudflareApiToken": "t" * 40, "accountId": "a" * 32}}
    prod_validate = {**validate, "environment": "production"}
    # read: GETs yes, POSTs no
    resp, _ = await api.call("GET", "/metrics/resources", token=read)
    assert resp.status == 200
    resp, body = await api.call("POST", "/deploy/validate", token=read, json=validate)
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    assert body["error"]["details"]["requiredScope"] == "deploy:staging"
    # deploy:staging: staging yes, production no, GETs no, admin no
    resp, body = await api.call("POST", "/deploy/validate", token=staging, json=prod_validate)
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    resp, body = await api.call("GET", "/metrics/resources", token=staging)
    assert resp.status == 403
    resp, body = await api.call("POST", "/auth/github-app/token", token=staging, json={"installationId": "1"})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    resp, body = await api.call("GET", "/auth/tokens", token=staging)
    assert resp.status == 403
    # admin: everything (token list as an example)
    resp, body = await api.call("GET", "/auth/tokens", token=admin)
    assert resp.status == 200 and len(body["data"]["tokens"]) == 3
    assert all("token" not in t for t in body["data"]["tokens"])


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_refresh_rotates_the_callers_token(api):
    old = await api.token("read", "deploy:staging", name="ci")
    resp, body = await api.call("POST", "/auth/tokens/refresh", token=old)
    assert resp.status == 200, body
    new = body["data"]["token"]
    assert new != old and body["data"]["apiToken"]["scopes"] == ["read", "deploy:staging"]
    assert body["data"]["apiToken"]["name"] == "ci"
    resp, _ = await api.call("GET", "/metrics/resources", token=old)
    assert resp.status == 401
    resp, _ = await api.call("GET", "/metrics/resources", token=new)
    assert resp.status == 200


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_validate_permissions_reports_what_the_token_may_do(api):
    token = await api.token("deploy:staging")
    resp, body = await api.call("POST", "/auth/permissions/validate", token=token, json={"environment": "staging"})
    assert resp.status == 200
    allowed = body["data"]["allowed"]
    assert allowed["deploy"] and allowed["rollback"] and not allowed["read"] and not allowed["admin"]
    resp, body = await api.call("POST", "/auth/permissions/validate", token=token, json={"environment": "production"})
    assert not body["data"]["allowed"]["deploy"]
    resp, body = await api.call("POST", "/auth/permissions/validate", token=token, json={"environment": "Bad Env"})
    assert resp.status == 422 and body["error"]["details"]["field"] == "environment"


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_token_management_over_rest(api):
    admin = await api.token("admin")
    resp, body = await api.call("POST", "/auth/tokens", token=admin, json={"name": "bot", "scopes": ["read"], "expiresInDays": 7})
    assert resp.status == 201, body
    created = body["data"]["token"]
    token_id = body["data"]["apiToken"]["id"]
    assert body["data"]["apiToken"]["expiresAt"]
    resp, _ = await api.call("GET", "/metrics/resources", token=created)
    assert resp.status == 200
    resp, body = await api.call("POST", "/auth/tokens", token=admin, json={"name": "bot", "scopes": ["root"]})
    assert resp.status == 422 and body["error"]["details"]["field"] == "scopes"
    resp, body = await api.call("DELETE", f"/auth/tokens/{token_id}", token=admin)
    assert resp.status == 200 and body["data"]["apiToken"]["revokedAt"]
    resp, _ = await api.call("GET", "/metrics/resources", token=created)
    assert resp.status == 401
    resp, body = await api.call("DELETE", "/auth/tokens/tok_nope", token=admin)
    assert resp.status == 404 and body["error"]["code"] == "SYS_005"
