"""/openapi.json: a valid OpenAPI 3.1 document, generated from the models that validate requests."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from handlers.api import models
from handlers.api.routes import OPERATIONS

SEED_PATHS = {
    ("post", "/deploy/validate"), ("post", "/deploy/prepare"), ("post", "/deploy"),
    ("post", "/auth/github-app/token"), ("post", "/auth/cloudflare/verify"),
    ("get", "/deploy/{deploymentId}/status"), ("get", "/deploy/{deploymentId}/logs"),
    ("get", "/health/deployment"), ("post", "/deploy/{deploymentId}/rollback"),
    ("post", "/deploy/{deploymentId}/retry"),
}
SEED_METHODS = {
    "validateCredentials", "prepareDeployment", "executeDeploy", "getDeploymentStatus", "streamLogs",
    "rollbackDeployment", "retryFailedStep", "generateGitHubToken", "verifyCloudflareToken", "refreshTokens",
    "validatePermissions", "getHealthStatus", "getDeploymentMetrics", "getErrorMetrics", "getResourceUsage",
}



@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_document_is_valid_and_complete(api):
    resp = await api.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert "success" not in doc  # bare, not enveloped
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented >= SEED_PATHS
    operation_ids = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert operation_ids >= SEED_METHODS
    # Every API route the app serves is documented (webhooks and the live page are not REST).
    for route in api.app.router.routes():
        info = route.get_info()
        path = info.get("path") or info.get("formatter")
        if route.method == "HEAD" or path.startswith(("/webhooks", "/deployments/")):
            continue
        assert (route.method.lower(), path) in documented, (route.method, path)


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)
async def test_auth_bodies_and_errors_are_documented(api):
    doc = await (await api.client.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": schemes["bearerAuth"]["description"]}
    validate_op = doc["paths"]["/deploy/validate"]["post"]
    assert validate_op["security"] == [{"bearerAuth": []}]
    assert {"401", "403", "422"} <= set(validate_op["responses"])
    assert {"402", "409", "424"} <= set(doc["paths"]["/deploy/prepare"]["post"]["responses"])
    assert {"400", "401", "403", "409", "500", "503"} <= set(doc["paths"]["/deploy"]["post"]["responses"])
    assert doc["paths"]["/health/deployment"]["get"]["security"] == []
    assert validate_op["responses"]["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
    # One source of truth: the documented body is the model's own JSON schema.
    schema = doc["components"]["schemas"]["ValidateRequest"]
    own = models.ValidateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    own.pop("$defs", None)
    assert schema == own
    creds = doc["components"]["schemas"]["Credentials"]
    assert creds["properties"]["accountId"]["pattern"] == models.ACCOUNT_ID_PATTERN
    deploy = doc["components"]["schemas"]["DeployOptionsBody"]["properties"]
    assert {"dryRun", "rollbackOnFailure", "maxRetries"} <= set(deploy)


def test_every_operation_has_a_unique_id():
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))
