"""/auth endpoints against the simulated GitHub and Cloudflare."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.api.conftest import ApiClient
from tests.engine.harness import ACCOUNT_ID, TOKEN
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY, seed_repo

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)  # backend-neutral HTTP behaviour



@pytest.fixture
async def github_api(github_sim, make_api) -> ApiClient:
    seed_repo(github_sim, permissions={"contents": "read", "issues": "write", "pull_requests": "write",
                                       "checks": "write", "metadata": "read"})
    github_sim.sim.add_collaborator(REPOSITORY, "alice", "write")
    github_sim.sim.add_collaborator(REPOSITORY, "maya", "maintain")
    api = await make_api(github_api_url=github_sim.url, github_app_id=str(github_sim.app_id),
                         github_private_key=SecretStr(github_sim.app_private_key), github_write_interval=0)
    api.github_sim = github_sim
    return api


async def test_github_installation_token_narrowed(github_api):
    api = github_api
    admin = await api.token("admin")
    resp, body = await api.call("POST", "/auth/github-app/token", token=admin, json={
        "installationId": str(INSTALLATION_ID), "permissions": {"contents": "read", "issues": "write"}})
    assert resp.status == 200, body
    data = body["data"]
    assert data["token"] and data["expiresAt"].endswith("Z")
    assert {k: v for k, v in data["permissions"].items() if k != "metadata"} == {"contents": "read", "issues": "write"}
    # GitHub really issued that token, with only those permissions.
    issued = api.github_sim.sim.tokens[data["token"]]
    assert {k: v for k, v in issued.permissions.items() if k != "metadata"} == {"contents": "read", "issues": "write"}
    # GitHub calls show up in /metrics without anyone calling a hook.
    text = await (await api.client.get("/metrics")).text()
    assert 'flareship_github_requests_total{method="POST",route="/app/installations/{installation_id}/access_tokens",status="201"}' in text


async def test_github_token_refuses_wider_permissions(github_api):
    admin = await github_api.token("admin")
    resp, body = await github_api.call("POST", "/auth/github-app/token", token=admin, json={
        "installationId": str(INSTALLATION_ID), "permissions": {"contents": "write", "pull_requests": "read"}})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    assert "contents" in body["error"]["message"] and "pull_requests" not in body["error"]["message"]
    assert body["error"]["details"]["permissions"] == {"contents": {"requested": "write", "installation": "read"}}
    resp, body = await github_api.call("POST", "/auth/github-app/token", token=admin, json={
        "installationId": str(INSTALLATION_ID), "permissions": {"administration": "read"}})
    assert resp.status == 403 and "administration" in body["error"]["message"]


async def test_github_token_needs_admin_and_a_known_installation(github_api):
    deployer = await github_api.token("deploy:staging", "read")
    resp, body = await github_api.call("POST", "/auth/github-app/token", token=deployer,
                                       json={"installationId": str(INSTALLATION_ID)})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"
    admin = await github_api.token("admin")
    resp, body = await github_api.call("POST", "/auth/github-app/token", token=admin, json={"installationId": "999999"})
    assert resp.status in (403, 404) and body["error"]["code"] in ("AUTH_002", "SYS_005"), body


async def test_validate_permissions_with_a_github_user(github_api):
    token = await github_api.token("read", "deploy:staging")
    resp, body = await github_api.call("POST", "/auth/permissions/validate", token=token, json={
        "environment": "production", "repository": REPOSITORY, "githubUser": "alice"})
    assert resp.status == 200, body
    github = body["data"]["github"]
    assert github == {"user": "alice", "repository": REPOSITORY, "permission": "write", "required": "maintain",
                      "allowed": False, "source": "default"}
    resp, body = await github_api.call("POST", "/auth/permissions/validate", token=token, json={
        "environment": "production", "repository": REPOSITORY, "githubUser": "maya"})
    assert body["data"]["github"]["allowed"] is True
    resp, body = await github_api.call("POST", "/auth/permissions/validate", token=token, json={
        "environment": "staging", "repository": REPOSITORY})
    assert resp.status == 422 and body["error"]["details"]["field"] == "githubUser"
    resp, body = await github_api.call("POST", "/auth/permissions/validate", token=token, json={
        "environment": "staging", "repository": REPOSITORY, "githubUser": "stranger"})
    assert body["data"]["github"]["permission"] == "none" and body["data"]["github"]["allowed"] is False


async def test_validate_permissions_follows_the_repository_policy(github_sim, make_api):
    policy = "environments:\n  production:\n    required_permission: admin\n    allowed_users: [alice]\n"
    seed_repo(github_sim, files={".github/flareship.yml": policy})
    github_sim.sim.add_collaborator(REPOSITORY, "alice", "write")
    github_sim.sim.add_collaborator(REPOSITORY, "maya", "maintain")
    api = await make_api(github_api_url=github_sim.url, github_app_id=str(github_sim.app_id),
                         github_private_key=SecretStr(github_sim.app_private_key), github_write_interval=0)
    token = await api.token("read")
    for user, allowed in (("alice", True), ("maya", False)):
        resp, body = await api.call("POST", "/auth/permissions/validate", token=token, json={
            "environment": "production", "repository": REPOSITORY, "githubUser": user})
        assert resp.status == 200, body
        assert body["data"]["github"]["required"] == "admin" and body["data"]["github"]["source"] == "config"
        assert body["data"]["github"]["allowed"] is allowed, user


async def test_cloudflare_verify(deploy_api):
    api, env = deploy_api, deploy_api.sim_env
    token = await api.token("deploy:staging")
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": TOKEN, "requiredScopes": []})
    assert resp.status == 200, body
    data = body["data"]
    token_id = env.sim.tokens[TOKEN].id
    # `user` is the token's user, as Cloudflare's GET /user tells it (not the token's own id).
    assert data["valid"] is True and data["user"]["id"] and data["user"]["id"] != token_id
    assert data["user"]["email"] == "sim@flareship.test" and data["user"]["reason"] is None
    assert any(a["id"] == ACCOUNT_ID for a in data["accounts"]) and data["scopes"]
    assert TOKEN not in await resp.text()
    scope = data["scopes"][0]
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": TOKEN, "requiredScopes": [scope]})
    assert resp.status == 200
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": TOKEN, "requiredScopes": ["Zone:Zone Settings:Edit"]})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_004"
    assert "Zone:Zone Settings:Edit" in body["error"]["message"]
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": "not-a-real-token-0123456789", "requiredScopes": []})
    assert resp.status == 401 and body["error"]["code"] == "AUTH_003"
    reader = await api.token("read")
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=reader, json={"apiToken": TOKEN})
    assert resp.status == 403 and body["error"]["code"] == "AUTH_006"


async def test_cloudflare_verify_without_user_details_permission(deploy_api):
    from bot.sim.cloudflare import DEPLOY_PERMISSIONS

    api, env = deploy_api, deploy_api.sim_env
    narrow = "sim-no-user-details-0123456789ab"
    env.sim.add_token(narrow, account_ids=[ACCOUNT_ID], permissions=DEPLOY_PERMISSIONS - {"user_details:read"})
    token = await api.token("deploy:staging")
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": narrow, "requiredScopes": ["Account:Workers Scripts:Edit"]})
    assert resp.status == 200, body
    data = body["data"]
    # Still a valid token; its user is unknown, and the answer says why instead of guessing.
    assert data["valid"] is True and any(a["id"] == ACCOUNT_ID for a in data["accounts"])
    assert data["user"] == {"id": None, "email": None, "reason": "missing_user_details_permission"}
    assert narrow not in await resp.text()


async def test_token_user_of_each_kind_of_token(deploy_api):
    """The client's GET /user reading against the simulated Cloudflare, for the three cases."""
    from bot.cloudflare.accounts import ACCOUNT_OWNED_TOKEN, MISSING_USER_DETAILS
    from bot.services import SERVICES
    from bot.sim.cloudflare import DEPLOY_PERMISSIONS

    env = deploy_api.sim_env
    clients = deploy_api.app[SERVICES].engine.cloudflare
    env.sim.add_token("sim-no-user-details-0123456789ab", account_ids=[ACCOUNT_ID],
                      permissions=DEPLOY_PERMISSIONS - {"user_details:read"})
    env.sim.add_token("cfat_sim-account-owned-0123456789", account_ids=[ACCOUNT_ID], permissions=DEPLOY_PERMISSIONS)
    user = await clients.for_token(TOKEN).token_user()
    assert user.id == "sim-user-" + env.sim.tokens[TOKEN].id[:8] and user.email == "sim@flareship.test"
    assert user.reason is None
    user = await clients.for_token("sim-no-user-details-0123456789ab").token_user()
    assert (user.id, user.email, user.reason) == (None, None, MISSING_USER_DETAILS)
    user = await clients.for_token("cfat_sim-account-owned-0123456789").token_user()
    assert (user.id, user.email, user.reason) == (None, None, ACCOUNT_OWNED_TOKEN)


async def test_cloudflare_verify_of_an_account_owned_token(deploy_api):
    """No account id is sent: the token's own account (the one GET /accounts shows) is used to
    verify it, and its `user` says it has none."""
    from bot.sim.cloudflare import DEPLOY_PERMISSIONS

    api, env = deploy_api, deploy_api.sim_env
    owned = "cfat_sim-account-owned-0123456789"
    env.sim.add_token(owned, account_ids=[ACCOUNT_ID], permissions=DEPLOY_PERMISSIONS)
    token = await api.token("deploy:staging")
    resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token,
                                json={"apiToken": owned, "requiredScopes": ["Account:Workers Scripts:Edit"]})
    assert resp.status == 200, body
    data = body["data"]
    assert data["valid"] is True and [a["id"] for a in data["accounts"]] == [ACCOUNT_ID]
    assert data["user"] == {"id": None, "email": None, "reason": "account_owned_token"}
    # Refused tokens still answer 401, whichever kind they claim to be.
    env.sim.add_token("cfat_sim-disabled-0123456789abcd", account_ids=[ACCOUNT_ID], status="disabled")
    for bad in ("cfat_sim-unknown-0123456789abcdef", "cfat_sim-disabled-0123456789abcd"):
        resp, body = await api.call("POST", "/auth/cloudflare/verify", token=token, json={"apiToken": bad})
        assert resp.status == 401 and body["error"]["code"] == "AUTH_003", (bad, body)
