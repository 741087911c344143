"""Pure parts of the client: envelope parsing into typed errors, and the request budget."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.cloudflare import (
    AuthenticationError,
    BudgetExhausted,
    Conflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    RequestBudget,
    ServerError,
    UnexpectedResponse,
    ValidationFailed,
)
from bot.cloudflare.transport import parse_envelope
from bot.engine.failures import catalogue_error
from tests.plugins.cloudflare_sim import FakeClock


def fail(code, status=400, message="nope"):
    return json.dumps({"success": False, "errors": [{"code": code, "message": message}], "messages": [],
                       "result": None}).encode()


def test_success_envelope():
    body = json.dumps({"success": True, "errors": [], "messages": [{"code": 10000, "message": "ok"}],
                       "result": {"id": "x"}, "result_info": {"page": 1}}).encode()
    parsed = parse_envelope(200, body)
    assert parsed.result == {"id": "x"} and parsed.result_info == {"page": 1} and parsed.messages[0]["code"] == 10000


@pytest.mark.parametrize("status,code,kind,flareship", [
    (401, 1000, AuthenticationError, "AUTH_003"),
    (400, 9106, AuthenticationError, "AUTH_003"),
    (403, 10000, PermissionDenied, "AUTH_004"),
    (403, 9109, PermissionDenied, "AUTH_004"),
    (404, 7003, NotFound, "DEPLOY_008"),
    (404, 10007, NotFound, "DEPLOY_008"),
    (404, 100146, NotFound, "DEPLOY_008"),
    (400, 10021, ValidationFailed, "DEPLOY_008"),
    (413, 10027, ValidationFailed, "DEPLOY_008"),
    (403, 10037, QuotaExceeded, "DEPLOY_002"),
    (403, 10075, QuotaExceeded, "DEPLOY_002"),
    (400, 10220, Conflict, "DEPLOY_008"),
    (429, 971, RateLimited, "SYS_003"),
    (500, 10013, ServerError, "SYS_002"),
])
def test_failure_codes_are_typed(status, code, kind, flareship):
    with pytest.raises(kind) as err:
        parse_envelope(status, fail(code), method="PUT", path="/accounts/x/workers/scripts/y")
    assert err.value.code == code and err.value.status == status
    mapped = catalogue_error(err.value, "Uploading Worker version")
    assert mapped.code == flareship and mapped.step == "Uploading Worker version"
    assert mapped.details["cloudflare"]["errors"][0]["code"] == code


def test_step_decides_the_deploy_code():
    with pytest.raises(ValidationFailed) as err:
        parse_envelope(400, fail(10021))
    assert catalogue_error(err.value, "Uploading container").code == "DEPLOY_003"
    assert catalogue_error(err.value, "Deploying Durable Objects").code == "DEPLOY_004"
    assert catalogue_error(err.value, "Configuring routes and DNS").code == "DEPLOY_005"
    assert catalogue_error(err.value, None).code == "SYS_001"


def test_code_error_shape():
    with pytest.raises(NotFound) as err:
        parse_envelope(404, json.dumps({"code": 10007, "error": "workers.api.error.script_not_found"}).encode())
    assert err.value.code == 10007 and "script_not_found" in str(err.value)


def test_success_false_with_200_is_an_error():
    with pytest.raises(ValidationFailed):
        parse_envelope(200, fail(10021))


def test_html_5xx_and_bad_json():
    with pytest.raises(ServerError):
        parse_envelope(502, b"<html>bad gateway</html>")
    with pytest.raises(UnexpectedResponse):
        parse_envelope(200, b"<html>surprise</html>")
    with pytest.raises(RateLimited) as err:
        parse_envelope(429, b"slow down", retry_after=12)
    assert err.value.retry_after == 12


def test_error_messages_are_redacted():
    from bot.logs import register_secret

    register_secret("super-secret-token-value-1234")
    with pytest.raises(AuthenticationError) as err:
        parse_envelope(401, fail(1000, message="bad token super-secret-token-value-1234"))
    assert "super-secret-token-value-1234" not in str(err.value)
    assert "super-secret-token-value-1234" not in catalogue_error(err.value).message


async def test_budget_never_exceeds_the_window():
    clock = FakeClock()
    budget = RequestBudget(limit=10, window=60, clock=clock, sleep=clock.sleep, max_wait=120)
    stamps = []

    async def one():
        await budget.acquire()
        stamps.append(clock.now)

    await asyncio.gather(*(one() for _ in range(35)))
    assert len(stamps) == 35
    stamps.sort()
    for i, start in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s < start + 60]
        assert len(in_window) <= 10
    assert budget.peak_in_window <= 10
    assert clock.now - 1000 >= 180  # 35 requests at 10/min need three more windows


async def test_budget_fails_fast_when_the_wait_is_too_long():
    clock = FakeClock()
    budget = RequestBudget(limit=3, window=300, clock=clock, sleep=clock.sleep, max_wait=10)
    for _ in range(3):
        await budget.acquire()
    with pytest.raises(BudgetExhausted) as err:
        await budget.acquire()
    mapped = catalogue_error(err.value, "Uploading Worker version")
    assert mapped.code == "SYS_003" and mapped.retry_after == pytest.approx(300)


async def test_budget_pause_after_429_holds_every_request():
    clock = FakeClock()
    budget = RequestBudget(limit=100, window=300, clock=clock, sleep=clock.sleep, max_wait=60)
    budget.pause(30)
    await budget.acquire()
    assert clock.now >= 1030
    budget.pause(600)
    with pytest.raises(BudgetExhausted):
        await budget.acquire()


async def test_client_budget_against_the_sim(cloudflare_sim, cloudflare_http):
    from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID, make_client

    clock = FakeClock()
    budget = RequestBudget(limit=5, window=300, clock=clock, sleep=clock.sleep, max_wait=1)
    client = make_client(cloudflare_sim, cloudflare_http, clock, budget=budget)
    for _ in range(5):
        await client.get_account(CF_ACCOUNT_ID)
    with pytest.raises(BudgetExhausted):
        await client.get_account(CF_ACCOUNT_ID)
    assert cloudflare_sim.sim.count_requests("GET", f"/accounts/{CF_ACCOUNT_ID}") == 5


async def test_factory_shares_one_budget_per_token():
    from bot.cloudflare import CloudflareClients
    from bot.settings import load_settings

    clients = CloudflareClients(load_settings(cloudflare_api_url="http://127.0.0.1:9/client/v4"))
    a, b, c = clients.for_token("token-a-123456789"), clients.for_token("token-a-123456789"), clients.for_token(
        "token-b-123456789")
    assert a.budget is b.budget and a.budget is not c.budget
    assert "token-a" not in repr(a)
    await clients.aclose()


async def test_factory_for_environment(monkeypatch):
    from bot.cloudflare import CloudflareClients
    from bot.errors import FlareshipError
    from bot.settings import load_settings

    monkeypatch.setenv("CLOUDFLARE_API_TOKEN_PRODUCTION", "prod-token-123456789")
    settings = load_settings(cloudflare_api_token="base-token-123456789")
    clients = CloudflareClients(settings)
    prod = await clients.for_environment("production")
    staging = await clients.for_environment("staging")
    assert prod.budget is clients.budget_for("prod-token-123456789")
    assert staging.budget is clients.budget_for("base-token-123456789")
    empty = CloudflareClients(load_settings())
    with pytest.raises(FlareshipError) as err:
        await empty.for_environment("staging")
    assert err.value.code == "AUTH_003"
    await clients.aclose()
    await empty.aclose()


def test_token_expiring_mid_deploy_is_auth_005():
    with pytest.raises(AuthenticationError) as err:
        parse_envelope(401, fail(9106, message="Authentication error: API token has expired"))
    assert catalogue_error(err.value, "Uploading Worker version").code == "AUTH_005"
    assert catalogue_error(err.value, "Authenticating with Cloudflare").code == "AUTH_003"
    with pytest.raises(AuthenticationError) as err:
        parse_envelope(401, fail(9106, message="Authentication error"))
    assert catalogue_error(err.value, "Uploading Worker version").code == "AUTH_003"
