"""DeploymentController: validate, prepare, deploy, status, logs, rollback, retry, cancel, list.

Handlers only translate HTTP to engine calls (the same ones the PR commands use) and back.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import aiohttp
import gidgethub
from aiohttp import web
from pydantic import Field, SecretStr

from bot.engine.model import Deployment, DeployOptions, PrepareRequest
from bot.errors import FlareshipError
from bot.github.app import GitHubApp
from bot.logs import register_secret
from bot.services import SERVICES
from bot.settings import CloudflareCredentials, Settings
from handlers.api import models
from handlers.api.bodies import parse_body, query_model
from handlers.api.present import (
    deploy_json,
    prepare_json,
    seed_status,
    status_json,
    step_medians,
    summary_json,
)
from handlers.api.security import authorize, caller
from handlers.api.sse import last_event_id, stream_logs
from handlers.api.state import API_STATE
from handlers.http import json_success

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger(__name__)

#: How many earlier deployments of an environment feed the step-duration medians.
HISTORY = 20
DEFAULT_ROLLBACK_SECONDS = 300


def engine_of(request: web.Request) -> Engine:
    return request.app[SERVICES].engine


def _actor(request: web.Request) -> str:
    token = caller(request)
    return f"api:{token.name}"


async def _deployment(request: web.Request) -> Deployment:
    return await engine_of(request).get(request.match_info["deploymentId"])


async def _medians(engine: Engine, environment: str) -> dict[str, float]:
    history = await engine.list(environment=environment, status="completed", limit=HISTORY)
    return step_medians(history)


def _credentials(body: models.ValidateRequest, settings: Settings) -> CloudflareCredentials:
    if body.credentials is None:
        creds = settings.cloudflare_credentials(body.environment)
        if creds.api_token is None or not creds.account_id:
            raise FlareshipError(
                "SYS_006", f"No Cloudflare credentials given and none configured for {body.environment}",
                variant="unprocessable", details={"field": "credentials", "reason": "required: none configured"},
            )
        return creds
    register_secret(body.credentials.cloudflareApiToken)
    return CloudflareCredentials(SecretStr(body.credentials.cloudflareApiToken), body.credentials.accountId)


async def validate_credentials(request: web.Request) -> web.Response:
    """POST /deploy/validate: can these Cloudflare credentials deploy to the environment?"""
    body = await parse_body(request, models.ValidateRequest)
    authorize(request, "validate", body.environment)
    credentials = _credentials(body, request.app[SERVICES].settings)
    result = await engine_of(request).validate(body.environment, credentials)
    return json_success(models.ValidateResponse.model_validate(result).model_dump(mode="json", exclude_none=True))


_SHA = re.compile(r"^[0-9a-f]{40}$")


async def _resolve_repository(request: web.Request, repository: str, ref: str | None) -> tuple[int, str, str]:
    """(installation id, commit SHA, ref) for a REST deploy of a repository's code."""
    github = request.app[SERVICES].github
    if not isinstance(github, GitHubApp):
        raise FlareshipError("SYS_002", "GitHub is not configured on this server; deploy with `config` instead")
    try:
        try:
            installation = await github.app_client().getitem(f"/repos/{repository}/installation")
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) == 404:
                raise FlareshipError("SYS_005", f"The GitHub App is not installed on {repository}",
                                     details={"field": "repository"}) from None
            raise
        gh = await github.client(int(installation["id"]))
        if ref is None:
            ref = (await gh.getitem(f"/repos/{repository}"))["default_branch"]
        if _SHA.match(ref):
            return int(installation["id"]), ref, ref
        quoted = quote(ref, safe="")
        try:
            compared = await gh.getitem(f"/repos/{repository}/compare/{quoted}...{quoted}")
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) in (404, 422):
                raise FlareshipError("SYS_005", f"No branch, tag or commit {ref!r} in {repository}",
                                     details={"field": "ref"}) from None
            raise
        return int(installation["id"]), compared["base_commit"]["sha"], ref
    except gidgethub.HTTPException as exc:
        raise FlareshipError("SYS_002", f"GitHub answered {exc.status_code} while resolving {repository}") from None
    except (aiohttp.ClientError, TimeoutError):
        raise FlareshipError("SYS_002", "GitHub is unreachable") from None


async def _prepare_request(request: web.Request, body: models.PrepareRequest | models.DeployRequest) -> PrepareRequest:
    if body.config is None and body.repository is None:
        raise FlareshipError(
            "SYS_006", "Give either `config` (the app to deploy) or `repository`",
            variant="unprocessable", details={"field": "config", "reason": "config or repository is required"},
        )
    if body.config is not None and body.repository is not None:
        raise FlareshipError(
            "SYS_006", "Give `config` or `repository`, not both",
            variant="unprocessable", details={"field": "repository", "reason": "conflicts with config"},
        )
    installation_id = sha = None
    ref = body.ref
    if body.repository is not None:
        installation_id, sha, ref = await _resolve_repository(request, body.repository, body.ref)
    return PrepareRequest(
        environment=body.environment,
        config=body.config.model_dump() if body.config else None,
        repository=body.repository,
        ref=ref,
        sha=sha,
        installation_id=installation_id,
        trigger="api",
        actor=_actor(request),
    )


async def prepare_deployment(request: web.Request) -> web.Response:
    """POST /deploy/prepare: pre-flight checks and a cost estimate; records an initiated deployment."""
    body = await parse_body(request, models.PrepareRequest)
    authorize(request, "prepare", body.environment)
    prepare = await _prepare_request(request, body)
    deployment = await engine_of(request).prepare(prepare)
    return json_success(prepare_json(deployment))


async def execute_deploy(request: web.Request) -> web.Response:
    """POST /deploy: start a prepared deployment (or prepare and start one) and return at once."""
    body = await parse_body(request, models.DeployRequest)
    authorize(request, "deploy", body.environment)
    prepare = None if body.deploymentId is not None else await _prepare_request(request, body)
    engine = engine_of(request)
    o = body.options
    options = DeployOptions(dry_run=o.dryRun, rollback_on_failure=o.rollbackOnFailure, max_retries=o.maxRetries)
    if body.deploymentId is not None:
        if body.config is not None or body.repository is not None:
            raise FlareshipError(
                "SYS_006", "Give deploymentId or config/repository, not both",
                variant="unprocessable", details={"field": "deploymentId", "reason": "conflicts with config/repository"},
            )
        prepared = await engine.get(body.deploymentId)
        if prepared.environment != body.environment:
            raise FlareshipError(
                "DEPLOY_001",
                f"Deployment {prepared.id} was prepared for {prepared.environment}, not {body.environment}",
                details={"field": "environment"},
            )
        deployment = await engine.deploy(body.deploymentId, options)
    else:
        assert prepare is not None  # made above when no deploymentId is given
        deployment = await engine.request_deploy(prepare, options)
    live = None
    if deployment.previous_release is None and not deployment.is_final:
        live = await engine.live_release(deployment.target, deployment.environment)
    return json_success(deploy_json(deployment, live))


async def get_deployment_status(request: web.Request) -> web.Response:
    """GET /deploy/{deploymentId}/status: progress, the current step with its logs, an ETA."""
    engine = engine_of(request)
    deployment = await _deployment(request)
    logs = await engine.logs(deployment.id)
    medians = {} if deployment.is_final else await _medians(engine, deployment.environment)
    if deployment.queue_position is None and deployment.status == "queued":
        deployment = deployment.model_copy(update={"queue_position": await engine.queue_position(deployment.id)})
    return json_success(status_json(deployment, logs=logs, medians=medians, now=datetime.now(UTC)))


async def stream_deployment_logs(request: web.Request) -> web.StreamResponse:
    """GET /deploy/{deploymentId}/logs: Server-Sent Events (replay, resume, live, end)."""
    after = last_event_id(request)  # a bad resume id is a 400 before any lookup
    engine = engine_of(request)
    deployment = await _deployment(request)
    return await stream_logs(request, engine, deployment.id, request.app[API_STATE].sse, after=after)


async def rollback_deployment(request: web.Request) -> web.Response:
    """POST /deploy/{deploymentId}/rollback: return the environment to the release before it."""
    body = await parse_body(request, models.RollbackRequest, optional=True)
    engine = engine_of(request)
    deployment = await _deployment(request)
    authorize(request, "rollback", deployment.environment)
    rollback = await engine.rollback(
        deployment.id, reason=body.reason, target_version=body.targetVersion, actor=_actor(request), trigger="api"
    )
    target = rollback.rollback_target.id if rollback.rollback_target else body.targetVersion
    medians = await _medians(engine, deployment.environment)
    estimate = max(1, math.ceil(sum(medians.values()))) if medians else DEFAULT_ROLLBACK_SECONDS
    return json_success(
        {"rollbackId": rollback.id, "status": seed_status(rollback.status), "targetVersion": target, "estimatedTime": estimate}
    )


async def retry_failed_step(request: web.Request) -> web.Response:
    """POST /deploy/{deploymentId}/retry: resume a failed deployment from its failed step."""
    body = await parse_body(request, models.RetryRequest, optional=True)
    engine = engine_of(request)
    deployment = await _deployment(request)
    authorize(request, "retry", deployment.environment)
    if body.stepName is not None and body.stepName not in {s.name for s in deployment.steps}:
        raise FlareshipError(
            "SYS_006", f"Unknown step {body.stepName!r}", variant="unprocessable",
            details={"field": "stepName", "reason": "not one of the deployment's steps"},
        )
    retried = await engine.retry(deployment.id, step_name=body.stepName, max_retries=body.maxRetries)
    return json_success(
        {"retryId": retried.id, "status": seed_status(retried.status), "attempt": retried.attempt, "maxAttempts": retried.max_attempts}
    )


async def cancel_deployment(request: web.Request) -> web.Response:
    """POST /deploy/{deploymentId}/cancel: stop a queued or running deployment between steps."""
    engine = engine_of(request)
    deployment = await _deployment(request)
    authorize(request, "cancel", deployment.environment)
    cancelled = await engine.cancel(deployment.id)
    return json_success({"deploymentId": cancelled.id, "status": seed_status(cancelled.status)})


class ListQuery(models.Body):
    environment: str | None = Field(default=None, pattern=models.ENVIRONMENT_PATTERN)
    repository: str | None = Field(default=None, pattern=models.REPOSITORY_PATTERN)
    status: models.DeploymentStatusFilter | None = None
    limit: int = Field(default=20, ge=1, le=100)
    before: str | None = Field(default=None, pattern=models.DEPLOYMENT_ID_PATTERN, description="Cursor: nextCursor of the previous page")


async def list_deployments(request: web.Request) -> web.Response:
    """GET /deployments: newest first, filtered, paged with `before`."""
    query = query_model(request, ListQuery)
    items = await engine_of(request).list(
        environment=query.environment, repository=query.repository, status=query.status,
        limit=query.limit + 1, before=query.before,
    )
    page = items[: query.limit]
    next_cursor = page[-1].id if len(items) > query.limit else None
    return json_success({"deployments": [summary_json(d) for d in page], "nextCursor": next_cursor})
