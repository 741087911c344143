"""Request and response bodies of the REST API, named exactly as the REST API's contract (GET /openapi.json) names them.

These pydantic models are the one source of truth: handlers validate request bodies with them
and `/openapi.json` is generated from their JSON schemas.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
ACCOUNT_ID_PATTERN = r"^[0-9a-f]{32}$"
#: API tokens travel in HTTP headers: printable ASCII only.
TOKEN_PATTERN = r"^[!-~]+$"
REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$"
DEPLOYMENT_ID_PATTERN = r"^dep_[A-Za-z0-9_-]{1,64}$"

Environment = Field(
    pattern=ENVIRONMENT_PATTERN,
    description="Target environment, e.g. staging or production",
    examples=["staging"],
)

PermissionLevel = Literal["read", "write", "admin"]
#: The REST API's statuses (the original set plus `cancelled`); a deployment waiting in the queue reads `initiated`.
DeploymentStatus = Literal["initiated", "in_progress", "completed", "failed", "rolled_back", "cancelled"]
#: The engine's own statuses, accepted as a filter on GET /deployments (`queued` included).
DeploymentStatusFilter = Literal["queued", "initiated", "in_progress", "completed", "failed", "rolled_back", "cancelled"]
#: The REST API's step statuses; a step with nothing to do is `completed` with `skipped: true`.
StepStatus = Literal["pending", "running", "completed", "failed"]
ServiceStatus = Literal["healthy", "degraded", "unhealthy"]


class Body(BaseModel):
    """Request bodies reject unknown fields, so a typo is a 422 naming it rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# -- POST /deploy/validate ------------------------------------------------------------------


class Credentials(Body):
    cloudflareApiToken: str = Field(min_length=1, max_length=512, pattern=TOKEN_PATTERN, description="Used for this call only; never stored or logged")
    accountId: str = Field(pattern=ACCOUNT_ID_PATTERN, description="Cloudflare account id: 32 lowercase hex characters")


class ValidateRequest(Body):
    environment: str = Environment
    credentials: Credentials | None = Field(
        default=None, description="When omitted, the server's configured credentials for the environment are checked"
    )


class CloudflarePermissions(Out):
    workers: bool
    containers: bool
    durableObjects: bool


class AccountInfo(Out):
    id: str
    name: str
    type: Literal["free", "pro", "business", "enterprise"]


class ValidateResponse(Out):
    valid: bool
    permissions: CloudflarePermissions
    accountInfo: AccountInfo
    workersPlan: Literal["free", "paid", "unknown"] | None = None


# -- POST /deploy/prepare ---------------------------------------------------------------------


class AppConfig(Body):
    appName: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Worker script name")
    containerImage: str | None = Field(default=None, min_length=1, max_length=512)
    durableObjects: list[str] = Field(default_factory=list, max_length=32)
    environmentVars: dict[str, str] = Field(default_factory=dict, max_length=128)


class PrepareRequest(Body):
    environment: str = Environment
    config: AppConfig | None = Field(default=None, description="The app to deploy (seed); or give `repository`")
    repository: str | None = Field(
        default=None, pattern=REPOSITORY_PATTERN, description="owner/name: deploy this repository's code (additive)"
    )
    ref: str | None = Field(default=None, min_length=1, max_length=255, description="Branch, tag or SHA (default: the default branch)")


class Checks(Out):
    resources: Literal["pass", "fail"]
    quotas: Literal["pass", "fail"]
    dependencies: Literal["pass", "fail"]


class EstimatedCost(Out):
    monthly: float
    currency: str = "USD"


class PrepareResponse(Out):
    prepared: bool
    deploymentId: str
    checks: Checks
    estimatedCost: EstimatedCost


# -- POST /deploy -------------------------------------------------------------------------------


class DeployOptionsBody(Body):
    dryRun: bool = False
    rollbackOnFailure: bool = True
    maxRetries: int = Field(default=3, ge=0, le=10)


class DeployRequest(Body):
    deploymentId: str | None = Field(
        default=None, pattern=DEPLOYMENT_ID_PATTERN, description="From /deploy/prepare; omit to prepare and deploy at once"
    )
    environment: str = Environment
    options: DeployOptionsBody = Field(default_factory=DeployOptionsBody)
    config: AppConfig | None = Field(default=None, description="Without deploymentId: the app to deploy")
    repository: str | None = Field(default=None, pattern=REPOSITORY_PATTERN)
    ref: str | None = Field(default=None, min_length=1, max_length=255)


class StepOut(Out):
    name: str
    status: StepStatus
    skipped: bool | None = Field(default=None, description="True when the step had nothing to do")
    startTime: str | None = None
    endTime: str | None = None
    error: str | None = None


class RollbackInfo(Out):
    available: bool
    previousVersion: str | None = None


class DeployResponse(Out):
    deploymentId: str
    status: DeploymentStatus
    steps: list[StepOut]
    urls: dict[str, str]
    rollbackInfo: RollbackInfo
    queuePosition: int | None = None


# -- GET /deploy/{id}/status ------------------------------------------------------------------


class Progress(Out):
    current: int
    total: int
    percentage: float


class CurrentStep(Out):
    name: str
    status: StepStatus
    startTime: str | None = None
    logs: list[str]


class CompletedStep(Out):
    name: str
    status: StepStatus
    skipped: bool | None = Field(default=None, description="True when the step had nothing to do")
    duration: float | None = Field(description="Seconds")


class StatusMetadata(Out):
    environment: str
    startTime: str | None = None
    estimatedCompletion: str | None = None


class DeploymentError(Out):
    code: str
    message: str
    step: str | None = None


class StatusResponse(Out):
    deploymentId: str
    status: DeploymentStatus
    progress: Progress
    currentStep: CurrentStep | None
    completedSteps: list[CompletedStep]
    metadata: StatusMetadata
    error: DeploymentError | None = None
    queuePosition: int | None = None


# -- GET /deployments -------------------------------------------------------------------------


class DeploymentSummary(Out):
    deploymentId: str
    kind: str
    environment: str
    status: DeploymentStatus
    appName: str | None = None
    repository: str | None = None
    ref: str | None = None
    sha: str | None = None
    trigger: str | None = None
    actor: str | None = None
    createdAt: str | None = None
    endedAt: str | None = None
    urls: dict[str, str] = Field(default_factory=dict)


class DeploymentList(Out):
    deployments: list[DeploymentSummary]
    nextCursor: str | None = Field(description="Pass as `before` to get the next page")


# -- rollback / retry / cancel ------------------------------------------------------------------


class RollbackRequest(Body):
    reason: str | None = Field(default=None, max_length=500)
    targetVersion: str | None = Field(default=None, min_length=1, max_length=200, description="A release id (rollbackInfo.previousVersion)")


class RollbackResponse(Out):
    rollbackId: str
    status: DeploymentStatus
    targetVersion: str | None
    estimatedTime: int = Field(description="Seconds")


class RetryRequest(Body):
    stepName: str | None = Field(default=None, min_length=1, max_length=100)
    maxRetries: int | None = Field(default=None, ge=1, le=10)


class RetryResponse(Out):
    retryId: str
    status: DeploymentStatus
    attempt: int
    maxAttempts: int


class CancelResponse(Out):
    deploymentId: str
    status: DeploymentStatus


# -- /auth --------------------------------------------------------------------------------------


class GitHubPermissions(BaseModel):
    """The three permissions the original API named, plus any other GitHub App permission name."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, PermissionLevel] = Field(init=False)

    contents: PermissionLevel | None = None
    pull_requests: PermissionLevel | None = None
    issues: PermissionLevel | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class GitHubTokenRequest(Body):
    installationId: str = Field(pattern=r"^[0-9]{1,19}$", description="GitHub App installation id")
    permissions: GitHubPermissions | None = Field(default=None, description="Narrow the token; omit for the installation's own")
    repositories: list[str] | None = Field(default=None, max_length=500, description="Repository names to narrow the token to")


class GitHubTokenResponse(Out):
    token: str
    expiresAt: str
    permissions: dict[str, str]


class CloudflareVerifyRequest(Body):
    apiToken: str = Field(min_length=1, max_length=512, pattern=TOKEN_PATTERN)
    requiredScopes: list[str] = Field(default_factory=list, max_length=64, examples=[["Zone:Zone:Read"]])


class CloudflareUser(Out):
    """The token's user from Cloudflare's GET /user; both null, with `reason`, when it may not be read."""

    id: str | None = Field(default=None, description="Cloudflare's id of the user the token acts for")
    email: str | None = None
    reason: Literal["account_owned_token", "missing_user_details_permission"] | None = Field(
        default=None,
        description="Why `id` and `email` are null: `account_owned_token` (the token belongs to an account, "
                    "not a user) or `missing_user_details_permission` (the token lacks User:User Details:Read); "
                    "null when the user was read",
    )


class CloudflareAccount(Out):
    id: str
    name: str
    type: str


class CloudflareVerifyResponse(Out):
    valid: bool
    user: CloudflareUser
    scopes: list[str]
    accounts: list[CloudflareAccount]


class ApiTokenOut(Out):
    id: str
    name: str
    scopes: list[str]
    createdAt: str
    expiresAt: str | None = None
    lastUsedAt: str | None = None
    revokedAt: str | None = None


class RefreshTokensRequest(Body):
    expiresInDays: int | None = Field(default=None, ge=1, le=3650, description="Default: the old token's lifetime")


class RefreshTokensResponse(Out):
    token: str = Field(description="The new API token, shown once; the old one is revoked")
    apiToken: ApiTokenOut
    revokedId: str


class ValidatePermissionsRequest(Body):
    environment: str = Environment
    repository: str | None = Field(default=None, pattern=REPOSITORY_PATTERN)
    githubUser: str | None = Field(default=None, pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
    requiredPermission: Literal["read", "triage", "write", "maintain", "admin"] | None = Field(
        default=None, description="Override the rule; default: the environment's required_permission in "
        ".github/flareship.yml on the default branch, else write (maintain for production)"
    )


class GitHubUserPermission(Out):
    user: str
    repository: str
    permission: str = Field(description="The user's effective repository role, or none")
    required: str
    allowed: bool = Field(description="May deploy to the environment (role, or listed in allowed_users)")
    source: Literal["config", "default"] = Field(description="Rule from .github/flareship.yml or the built-in default")


class ValidatePermissionsResponse(Out):
    environment: str
    scopes: list[str]
    allowed: dict[str, bool]
    github: GitHubUserPermission | None = None


# -- monitoring -----------------------------------------------------------------------------------


class ServiceHealth(Out):
    status: ServiceStatus
    responseTime: int | None = Field(description="Milliseconds")
    lastCheck: str | None
    issues: list[str] = Field(default_factory=list)


class FailingRemoval(Out):
    repository: str
    pullRequest: int
    preview: str
    attempts: int
    lastError: str | None
    nextRetry: str | None


class PreviewsHealth(Out):
    """PR previews: removals the sweep still has to finish (bot/engine/preview_sweep.py)."""

    lastSweep: str | None
    pendingRemovals: int
    failingRemovals: list[FailingRemoval] = Field(default_factory=list)


class HealthResponse(Out):
    healthy: bool
    services: dict[str, ServiceHealth]
    activeDeployments: int
    queuedDeployments: int
    previews: PreviewsHealth | None = None


class StepStats(Out):
    name: str
    count: int
    medianDuration: float | None
    p95Duration: float | None


class DeploymentMetrics(Out):
    window: int = Field(description="How many recent deployments were considered")
    total: int
    byStatus: dict[str, int]
    byEnvironment: dict[str, dict[str, int]]
    successRate: float | None
    medianDuration: float | None
    steps: list[StepStats]


class ErrorMetrics(Out):
    window: int
    failed: int
    errorRate: float | None
    byCode: dict[str, int]
    byStep: dict[str, int]
    recent: list[dict[str, str | None]]


class ResourceUsage(Out):
    process: dict[str, float | int | None]
    eventLoop: dict[str, int]
    deployments: dict[str, int]
    rateLimits: dict[str, float | None]


class ErrorDetails(Out):
    step: str | None = None
    timestamp: str
    correlationId: str
    field: str | None = None
    reason: str | None = None


class ErrorInfo(Out):
    code: str
    message: str
    details: ErrorDetails
    retryable: bool
    suggestedAction: str


class ErrorEnvelope(Out):
    error: ErrorInfo


class EnvelopeMetadata(Out):
    timestamp: str
    version: str
    correlationId: str


class CreateTokenRequest(Body):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=32, examples=[["read", "deploy:staging"]])
    expiresInDays: int | None = Field(default=None, ge=1, le=3650)


class CreatedToken(Out):
    token: str = Field(description="Shown once")
    apiToken: ApiTokenOut


class TokenList(Out):
    tokens: list[ApiTokenOut]


class TokenOut(Out):
    apiToken: ApiTokenOut
