"""GitHubApp: the App JWT, installation tokens (cache, shared mint, narrowing, expiry), auth errors."""

from __future__ import annotations

import asyncio
import io
import logging
import time

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub import BadRequest

from bot.errors import FlareshipError
from bot.github.app import JWT_BACKDATE, GitHubApp
from bot.logs import configure_logging
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY, make_github_app

MINT = "/app/installations/*/access_tokens"


class Clock:
    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_jwt_shape_follows_gidgethub(github_sim, github_session):
    fixed = 1_800_000_000.0
    app = make_github_app(github_session, github_sim, clock=lambda: fixed)
    token = app.jwt()
    header = pyjwt.get_unverified_header(token)
    claims = pyjwt.decode(token, github_sim.sim.app_public_key, algorithms=["RS256"],
                          options={"verify_exp": False, "verify_iat": False})
    assert header["alg"] == "RS256"
    assert claims["iss"] == str(github_sim.app_id)
    assert claims["iat"] == int(fixed) - JWT_BACKDATE
    assert claims["exp"] - fixed <= 600  # GitHub refuses exp more than 10 minutes ahead
    assert claims["exp"] > fixed


def test_jwt_is_cached_then_renewed_before_expiry(github_sim, github_session):
    now = [1_800_000_000.0]
    app = make_github_app(github_session, github_sim, clock=lambda: now[0])
    first = app.jwt()
    now[0] += 300
    assert app.jwt() == first
    now[0] += 121  # 7 min after minting: under 2 minutes of life left
    renewed = app.jwt()
    assert renewed != first
    claims = pyjwt.decode(renewed, options={"verify_signature": False})
    assert claims["exp"] - now[0] > 120


async def test_token_is_cached_per_installation(github_app, github_sim):
    first = await github_app.installation_token(INSTALLATION_ID)
    second = await github_app.installation_token(INSTALLATION_ID)
    assert first is second
    assert first.token.startswith("ghs_")
    assert len(github_sim.sim.calls("POST", MINT)) == 1
    assert github_sim.sim.calls("POST", MINT)[0].auth == "jwt"
    assert first.expires_at.timestamp() > time.time() + 3000
    assert "***" in repr(first) and first.token not in repr(first)


async def test_concurrent_callers_share_one_mint(github_app, github_sim):
    github_sim.sim.inject_fault("POST", MINT, delay=0.05)  # slow mint: every caller arrives during it
    tokens = await asyncio.gather(*(github_app.installation_token(INSTALLATION_ID) for _ in range(20)))
    assert len({t.token for t in tokens}) == 1
    assert len(github_sim.sim.calls("POST", MINT)) == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_mint(github_app, github_sim):
    github_sim.sim.inject_fault("POST", MINT, delay=0.05)
    impatient = asyncio.ensure_future(github_app.installation_token(INSTALLATION_ID))
    patient = asyncio.ensure_future(github_app.installation_token(INSTALLATION_ID))
    await asyncio.sleep(0.01)
    impatient.cancel()
    token = await patient
    assert token.token.startswith("ghs_")
    assert len(github_sim.sim.calls("POST", MINT)) == 1


async def test_narrowed_token_sends_a_body_and_is_cached_separately(github_app, github_sim):
    wide = await github_app.installation_token(INSTALLATION_ID)
    narrow = await github_app.installation_token(
        INSTALLATION_ID, permissions={"checks": "write"}, repositories=[REPOSITORY]
    )
    again = await github_app.installation_token(
        INSTALLATION_ID, permissions={"checks": "write"}, repositories=[REPOSITORY]
    )
    mints = github_sim.sim.calls("POST", MINT)
    assert len(mints) == 2 and again is narrow and narrow.token != wide.token
    assert mints[0].body is None  # the full token: no body at all
    assert mints[1].body == {"repositories": ["widgets"], "permissions": {"checks": "write"}}
    assert narrow.permissions == {"checks": "write", "metadata": "read"}
    assert narrow.repositories == (REPOSITORY,)
    # The narrowed token really is narrow: it cannot read contents.
    gh = github_app.client_for_token(narrow.token)
    with pytest.raises(BadRequest) as exc:
        await gh.getitem(f"/repos/{REPOSITORY}/contents/README.md")
    assert int(exc.value.status_code) == 403


async def test_narrowing_wider_than_the_installation_is_refused(github_app):
    with pytest.raises(FlareshipError) as exc:
        await github_app.installation_token(INSTALLATION_ID, permissions={"administration": "write"})
    assert exc.value.code == "AUTH_002"


async def test_installation_permissions_reads_the_installation(github_app, github_sim):
    permissions = await github_app.installation_permissions(INSTALLATION_ID)
    assert permissions == github_sim.sim.installations[INSTALLATION_ID].permissions
    assert github_sim.sim.calls("GET", "/app/installations/*")[0].auth == "jwt"


async def test_unknown_installation_is_access_denied(github_app):
    with pytest.raises(FlareshipError) as exc:
        await github_app.installation_token(999)
    assert exc.value.code == "AUTH_002"
    with pytest.raises(FlareshipError) as exc:
        await github_app.installation_permissions(999)
    assert exc.value.code == "AUTH_002"


async def test_jwt_signed_with_the_wrong_key_is_auth_001(github_sim, github_session):
    app = GitHubApp(github_session, app_id=str(github_sim.app_id), private_key=_other_key(),
                    base_url=github_sim.url, write_interval=0)
    with pytest.raises(FlareshipError) as exc:
        await app.installation_token(INSTALLATION_ID)
    assert exc.value.code == "AUTH_001"
    assert github_sim.sim.calls("POST", MINT)[0].status == 401


async def test_token_is_refreshed_shortly_before_expiry(github_app, github_sim):
    clock = Clock()
    github_app.clock = clock
    github_sim.sim.clock = clock  # GitHub's clock moves too (it checks the JWT's iat/exp)
    first = await github_app.installation_token(INSTALLATION_ID)
    clock.offset = 3600 - 400  # more than 5 minutes left: still cached
    assert await github_app.installation_token(INSTALLATION_ID) is first
    clock.offset = 3600 - 200  # under 5 minutes left: mint a new one
    second = await github_app.installation_token(INSTALLATION_ID)
    assert second.token != first.token
    assert len(github_sim.sim.calls("POST", MINT)) == 2


async def test_client_recovers_from_a_revoked_token(github_app, github_sim):
    gh = await github_app.client(INSTALLATION_ID)
    first = await github_app.installation_token(INSTALLATION_ID)
    github_sim.sim.expire_token(first.token)  # GitHub now answers 401 Bad credentials
    repo = await gh.getitem(f"/repos/{REPOSITORY}")
    assert repo["full_name"] == REPOSITORY
    statuses = [r.status for r in github_sim.sim.calls("GET", f"/repos/{REPOSITORY}")]
    assert statuses == [401, 200]
    assert len(github_sim.sim.calls("POST", MINT)) == 2


async def test_tokens_never_reach_the_logs(github_app, github_sim):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "text", stream=stream)
    try:
        token = await github_app.installation_token(INSTALLATION_ID)
        gh = await github_app.client(INSTALLATION_ID)
        github_sim.sim.inject_fault("GET", "/repos/*", 502, times=1)
        await gh.getitem(f"/repos/{REPOSITORY}")
        logging.getLogger("test").info("leak attempt %s", token.token)
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "minted an installation token" in output
    assert token.token not in output
    assert github_sim.app_private_key.splitlines()[1] not in output
