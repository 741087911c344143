"""Every REST operation in one table: it registers the routes and generates `/openapi.json`.

The OpenAPI document is built from the same pydantic models the handlers validate with, so the
documentation cannot drift from the behaviour.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bot.errors import FlareshipError
from bot.services import SERVICES
from handlers.api import auth, deployments, models, monitoring
from handlers.api.security import authenticated, metrics_guard
from handlers.http import API_VERSION

ID_PARAM = {
    "name": "deploymentId", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": models.DEPLOYMENT_ID_PATTERN},
}


RESUME_PARAMS = (
    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
     "description": "Resume after this event id (sent by EventSource on reconnect); anything but 1 to 18 "
                    "ASCII digits answers 400 SYS_006. Wins over lastEventId when both are sent."},
    {"name": "lastEventId", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": 999_999_999_999_999_999},
     "description": "Same as Last-Event-ID, for clients that cannot set headers (400 SYS_006 when invalid)"},
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    #: None: public; "read"/"admin": that scope up front; "token": any valid token (the handler checks more).
    auth: str | None = "read"
    request: type[BaseModel] | None = None
    request_optional: bool = False
    response: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_params: tuple[dict[str, Any], ...] = ()
    errors: tuple[int, ...] = ()
    success_status: int = 200
    #: "json" (enveloped), "sse", "text" (Prometheus), "bare-json".
    kind: str = "json"
    description: str = ""


OPERATIONS: tuple[Operation, ...] = (
    # DeploymentController
    Operation("POST", "/deploy/validate", deployments.validate_credentials, "validateCredentials",
              "Validate deployment credentials before attempting deployment", "deployments", auth="token",
              request=models.ValidateRequest, response=models.ValidateResponse,
              errors=(400, 401, 403, 413, 415, 422, 429, 502, 503, 504)),
    Operation("POST", "/deploy/prepare", deployments.prepare_deployment, "prepareDeployment",
              "Prepare deployment with pre-flight checks", "deployments", auth="token",
              request=models.PrepareRequest, response=models.PrepareResponse,
              errors=(400, 401, 402, 403, 404, 409, 413, 415, 422, 424, 429, 502, 503, 504)),
    Operation("POST", "/deploy", deployments.execute_deploy, "executeDeploy",
              "Execute deployment with improved error handling", "deployments", auth="token",
              request=models.DeployRequest, response=models.DeployResponse,
              errors=(400, 401, 402, 403, 404, 409, 413, 415, 422, 424, 429, 500, 502, 503, 504)),
    Operation("GET", "/deployments", deployments.list_deployments, "listDeployments",
              "List deployments, newest first", "deployments", query=deployments.ListQuery,
              response=models.DeploymentList, errors=(401, 403, 422, 503)),
    Operation("GET", "/deploy/{deploymentId}/status", deployments.get_deployment_status, "getDeploymentStatus",
              "Get detailed deployment status", "deployments", response=models.StatusResponse,
              path_params=(ID_PARAM,), errors=(401, 403, 404, 503)),
    Operation("GET", "/deploy/{deploymentId}/logs", deployments.stream_deployment_logs, "streamLogs",
              "Stream deployment logs (Server-Sent Events)", "deployments", path_params=(ID_PARAM, *RESUME_PARAMS),
              errors=(400, 401, 403, 404, 503), kind="sse",
              description="Replays stored lines, then streams new ones. Each event has `id: N` and "
                          "`data: {timestamp, level, message, step}`; reconnect with `Last-Event-ID` to resume. "
                          "Comments keep the connection alive. The last event, `event: end` (no id), has "
                          "`data: {timestamp, level, message, deploymentId, status}` (and `error` when it failed)."),
    Operation("POST", "/deploy/{deploymentId}/rollback", deployments.rollback_deployment, "rollbackDeployment",
              "Roll the deployment's environment back to the release before it (or targetVersion)", "deployments",
              auth="token", request=models.RollbackRequest, request_optional=True, response=models.RollbackResponse,
              path_params=(ID_PARAM,), errors=(400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504)),
    Operation("POST", "/deploy/{deploymentId}/retry", deployments.retry_failed_step, "retryFailedStep",
              "Retry a failed deployment from its failed step", "deployments", auth="token",
              request=models.RetryRequest, request_optional=True, response=models.RetryResponse,
              path_params=(ID_PARAM,), errors=(400, 401, 403, 404, 409, 413, 415, 422, 503)),
    Operation("POST", "/deploy/{deploymentId}/cancel", deployments.cancel_deployment, "cancelDeployment",
              "Cancel a queued or running deployment between steps", "deployments", auth="token",
              response=models.CancelResponse, path_params=(ID_PARAM,), errors=(401, 403, 404, 409, 503)),
    # AuthController
    Operation("POST", "/auth/github-app/token", auth.generate_github_token, "generateGitHubToken",
              "Generate an installation access token (admin; never wider than the installation)", "auth",
              auth="admin", request=models.GitHubTokenRequest, response=models.GitHubTokenResponse,
              errors=(400, 401, 403, 404, 413, 415, 422, 502, 503)),
    Operation("POST", "/auth/cloudflare/verify", auth.verify_cloudflare_token, "verifyCloudflareToken",
              "Verify a Cloudflare API token and its permissions", "auth", auth="token",
              request=models.CloudflareVerifyRequest, response=models.CloudflareVerifyResponse,
              errors=(400, 401, 403, 413, 415, 422, 429, 502, 503, 504)),
    Operation("POST", "/auth/tokens/refresh", auth.refresh_tokens, "refreshTokens",
              "Rotate the caller's API token: a new value, the old one revoked", "auth", auth="token",
              request=models.RefreshTokensRequest, request_optional=True, response=models.RefreshTokensResponse,
              errors=(400, 401, 413, 415, 422, 503)),
    Operation("POST", "/auth/permissions/validate", auth.validate_permissions, "validatePermissions",
              "What the caller's token may do on an environment, and a GitHub user's repository permission",
              "auth", auth="token", request=models.ValidatePermissionsRequest,
              response=models.ValidatePermissionsResponse, errors=(400, 401, 403, 404, 413, 415, 422, 502, 503)),
    Operation("GET", "/auth/tokens", auth.list_api_tokens, "listApiTokens", "List API tokens (admin)", "auth",
              auth="admin", response=models.TokenList, errors=(401, 403, 503)),
    Operation("POST", "/auth/tokens", auth.create_api_token, "createApiToken", "Create an API token (admin)", "auth",
              auth="admin", request=models.CreateTokenRequest, response=models.CreatedToken, success_status=201,
              errors=(400, 401, 403, 413, 415, 422, 503)),
    Operation("DELETE", "/auth/tokens/{tokenId}", auth.revoke_api_token, "revokeApiToken", "Revoke an API token (admin)",
              "auth", auth="admin", response=models.TokenOut,
              path_params=({"name": "tokenId", "in": "path", "required": True, "schema": {"type": "string"}},),
              errors=(401, 403, 404, 503)),
    # MonitoringController
    Operation("GET", "/health/deployment", monitoring.get_health_status, "getHealthStatus",
              "Deployment system health (from background probes)", "monitoring", auth=None,
              response=models.HealthResponse),
    Operation("GET", "/metrics/deployments", monitoring.get_deployment_metrics, "getDeploymentMetrics",
              "Deployment performance metrics", "monitoring", query=monitoring.WindowQuery,
              response=models.DeploymentMetrics, errors=(401, 403, 422, 503)),
    Operation("GET", "/metrics/errors", monitoring.get_error_metrics, "getErrorMetrics",
              "Error rates and patterns", "monitoring", query=monitoring.WindowQuery,
              response=models.ErrorMetrics, errors=(401, 403, 422, 503)),
    Operation("GET", "/metrics/resources", monitoring.get_resource_usage, "getResourceUsage",
              "Resource utilisation", "monitoring", response=models.ResourceUsage, errors=(401, 403)),
    Operation("GET", "/metrics", monitoring.prometheus_metrics, "prometheusMetrics",
              "Prometheus metrics (text; needs METRICS_TOKEN as bearer when set)", "monitoring", auth="metrics",
              kind="text", errors=(401,)),
)

_ERROR_TEXT = {
    400: "Malformed request or invalid configuration", 401: "Missing, invalid, expired or revoked credentials",
    402: "Resource quota exceeded", 403: "Not allowed (token scope or permissions)", 404: "Not found",
    409: "Conflict (busy, locked, or wrong state)", 429: "Rate limited (see Retry-After)", 413: "Request body larger than 1 MiB",
    415: "Content-Type is not application/json, or declares a charset other than UTF-8", 422: "Validation failed (see details.field and details.reason)",
    424: "Dependency check failed", 500: "Internal error", 502: "Upstream failure", 503: "Service temporarily unavailable",
    504: "Upstream timeout",
}


def _envelope_schema(data_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data", "metadata"],
        "properties": {
            "success": {"const": True},
            "data": data_schema,
            "metadata": {"$ref": "#/components/schemas/EnvelopeMetadata"},
        },
    }


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def openapi_document(operations: tuple[Operation, ...] = OPERATIONS) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `operations`, schemas straight from the pydantic models."""
    models_used: set[type[BaseModel]] = {models.ErrorEnvelope, models.EnvelopeMetadata}
    for op in operations:
        models_used.update(m for m in (op.request, op.response) if m is not None)
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation" if any(op.request is m for op in operations) else "serialization") for m in models_used
    ]
    keys.sort(key=lambda k: k[0].__name__)
    refs, defs = models_json_schema(keys, ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(defs.get("$defs", {}))
    paths: dict[str, Any] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": list(op.path_params),
            "responses": {},
        }
        if op.description:
            entry["description"] = op.description
        if op.query is not None:
            entry["parameters"] += _query_parameters(op.query, components)
        if op.auth == "metrics":
            entry["security"] = [{}, {"metricsToken": []}]
        elif op.auth is None:
            entry["security"] = []
        else:
            entry["security"] = [{"bearerAuth": []}]
        if op.request is not None:
            entry["requestBody"] = {
                "required": not op.request_optional,
                "content": {"application/json": {"schema": refs[(op.request, "validation")]}},
            }
        if op.kind == "json":
            data_schema = refs[(op.response, "serialization")] if op.response else {}
            entry["responses"][str(op.success_status)] = {
                "description": "Success",
                "content": {"application/json": {"schema": _envelope_schema(data_schema)}},
            }
        elif op.kind == "sse":
            entry["responses"]["200"] = {
                "description": "A stream of log events", "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        elif op.kind == "text":
            entry["responses"]["200"] = {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        for status in op.errors:
            entry["responses"][str(status)] = {
                "description": _ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    paths["/healthz"] = {"get": {
        "operationId": "healthz", "summary": "Bare liveness check", "tags": ["monitoring"], "security": [],
        "responses": {"200": {"description": "Alive", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}}}}},
    }}
    paths["/readyz"] = {"get": {
        "operationId": "readyz", "summary": "Bare readiness check (database, migrations, dispatcher)",
        "tags": ["monitoring"], "security": [],
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"status": {"const": "ready"}}, "required": ["status"]}}}},
            "503": {"description": "Not ready: `problems` names each part that is not", "content": {
                "application/json": {"schema": {"type": "object", "properties": {
                    "status": {"const": "not ready"},
                    "problems": {"type": "object", "additionalProperties": {"type": "string"}}},
                    "required": ["status", "problems"]}}}},
        },
    }}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document", "tags": ["monitoring"], "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
    }}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Flareship REST API",
            "version": API_VERSION,
            "description": "Deploy to Cloudflare through the same engine as the pull-request commands. "
                           "Successes come in the `{success, data, metadata}` envelope, errors as `{error: {...}}`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": "deployments"}, {"name": "auth"}, {"name": "monitoring"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "A token from `flareship token create`"},
                "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN, when the operator set one"},
            },
        },
    }


@functools.cache
def _openapi() -> dict[str, Any]:
    """The document, built on first request (it never changes while the process runs)."""
    return openapi_document()


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(_openapi())


def counted(handler: Handler, operation_id: str) -> Handler:
    """Count each call of an operation by its final HTTP status (errors included)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except FlareshipError as exc:
            status = exc.status
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            request.app[SERVICES].metrics.api_request(operation_id, status)

    return wrapper


def setup(app: web.Application) -> None:
    """Register every operation (wrapped with its auth and its counter) plus /openapi.json."""
    for op in OPERATIONS:
        handler = op.handler
        if op.auth == "metrics":
            handler = metrics_guard(handler)
        elif op.auth is not None:
            handler = authenticated(handler, action=None if op.auth == "token" else op.auth)
        handler = counted(handler, op.operation_id)
        app.router.add_route(op.method, op.path, handler, name=op.operation_id)
    app.router.add_get("/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/readyz", monitoring.get_readiness, name="readyz")
