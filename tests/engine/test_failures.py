"""Cloudflare's typed errors read as catalogue errors, per step (bot/engine/failures.py)."""

from __future__ import annotations

from bot.cloudflare.errors import (
    AuthenticationError,
    CloudflareTimeout,
    NotFound,
    QuotaExceeded,
    ServerError,
    TokenInactive,
)
from bot.cloudflare.registry import RegistryError
from bot.engine.failures import catalogue_error, step_failure, token_failure
from bot.engine.model import AUTHENTICATE, CONTAINER, DURABLE_OBJECTS, RESOURCES, WORKER


def test_an_outage_in_a_step_is_the_steps_failure_with_its_cause():
    error = step_failure(ServerError(503, [{"code": 10013, "message": "down"}]), WORKER)
    assert (error.code, error.step, error.details["cause"]) == ("DEPLOY_008", WORKER, "SYS_002")
    assert catalogue_error(ServerError(503, []), WORKER).code == "SYS_002"
    assert step_failure(CloudflareTimeout("read timeout"), DURABLE_OBJECTS).code == "DEPLOY_004"


def test_a_token_rejected_after_step_2_expired_during_the_run():
    rejected = AuthenticationError(401, [{"code": 10000, "message": "Authentication error"}])
    assert step_failure(rejected, WORKER).code == "AUTH_005"
    assert step_failure(rejected, AUTHENTICATE).code == "AUTH_003"
    assert catalogue_error(rejected).code == "AUTH_003"


def test_an_inactive_token_is_named_and_expiry_counts_only_in_a_deployment():
    expired = TokenInactive("expired")
    assert token_failure(expired, AUTHENTICATE).code == "AUTH_005"
    assert token_failure(expired).code == "AUTH_003"
    assert token_failure(TokenInactive("disabled"), AUTHENTICATE).message == "The Cloudflare token is disabled"
    assert token_failure(NotFound(404, [{"code": 7003, "message": "no route"}])).code == "SYS_001"


def test_quota_and_registry_errors_keep_their_own_codes():
    quota = catalogue_error(QuotaExceeded(400, [{"code": 10037, "message": "too many"}]), RESOURCES)
    assert (quota.code, quota.status) == ("DEPLOY_002", 402)
    registry = RegistryError("push refused", status=403)
    assert step_failure(registry, CONTAINER).code == "DEPLOY_003"
    assert step_failure(registry, DURABLE_OBJECTS).code == "DEPLOY_003"
    assert catalogue_error(registry).details == {"registry": {"status": 403, "errors": []}}


def test_other_statuses_of_a_code_are_named_in_the_catalogue():
    from bot.errors import CATALOGUE, FlareshipError

    assert FlareshipError("DEPLOY_007", "Rollback refused", variant="refused").status == 409
    assert FlareshipError("DEPLOY_007", "Rollback failed").status == CATALOGUE["DEPLOY_007"].status == 500
    assert FlareshipError("SYS_006", variant="unprocessable").status == 422
