"""The deployment record and the values front doors exchange with the engine.

Pydantic models so that REST (`.model_dump(mode="json")`), reporters and the store share one
shape. Nothing here does I/O.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The pipeline's step names, as check runs, logs and the REST API show them: defined here only.
VALIDATE = "Validating configuration"
AUTHENTICATE = "Authenticating with Cloudflare"
RESOURCES = "Checking resources and quotas"
CONTAINER = "Uploading container"
DURABLE_OBJECTS = "Deploying Durable Objects"
WORKER = "Uploading Worker version"
ROUTES = "Configuring routes and DNS"
HEALTH = "Health check"

STEP_NAMES: tuple[str, ...] = (VALIDATE, AUTHENTICATE, RESOURCES, CONTAINER, DURABLE_OBJECTS, WORKER, ROUTES, HEALTH)

#: The catalogue code a failure in each step maps to when nothing more specific is known.
STEP_ERROR_CODES: dict[str, str] = {
    VALIDATE: "DEPLOY_001",
    AUTHENTICATE: "AUTH_003",
    RESOURCES: "DEPLOY_002",
    CONTAINER: "DEPLOY_003",
    DURABLE_OBJECTS: "DEPLOY_004",
    WORKER: "DEPLOY_008",
    ROUTES: "DEPLOY_005",
    HEALTH: "DEPLOY_006",
}

DeploymentStatus = Literal["queued", "initiated", "in_progress", "completed", "failed", "rolled_back", "cancelled"]
StepStatus = Literal["pending", "running", "completed", "failed", "skipped"]
Trigger = Literal["api", "comment", "label", "merge", "button", "rerequest", "retry", "rollback_on_failure"]

#: Statuses after which a deployment never changes again.
FINAL_STATUSES = frozenset({"completed", "failed", "rolled_back", "cancelled"})
#: Statuses that wait for (or hold) the environment's lease.
ACTIVE_STATUSES = frozenset({"queued", "in_progress"})

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str, *, now: float | None = None) -> str:
    """`prefix` + 10 chars of milliseconds + 16 random chars (ULID-like: sorts by creation time)."""
    ms = int((time.time() if now is None else now) * 1000)
    stamp = ""
    for _ in range(10):
        stamp = _CROCKFORD[ms & 31] + stamp
        ms >>= 5
    rand = int.from_bytes(os.urandom(10), "big")
    tail = ""
    for _ in range(16):
        tail += _CROCKFORD[rand & 31]
        rand >>= 5
    return f"{prefix}{stamp}{tail}"


def new_deployment_id() -> str:
    return new_id("dep_")


def new_release_id() -> str:
    return new_id("rel_")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Model):
    name: str
    status: StepStatus = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    error_code: str | None = None
    attempt: int = 0

    @property
    def duration(self) -> float | None:
        if self.started_at and self.ended_at:
            return round((self.ended_at - self.started_at).total_seconds(), 3)
        return None


def initial_steps() -> list[Step]:
    return [Step(name=n) for n in STEP_NAMES]


class DeployOptions(_Model):
    dry_run: bool = False
    rollback_on_failure: bool = True
    max_retries: int = Field(default=3, ge=0, le=20)


class ReleaseContainer(_Model):
    """One container application as a release left it: rollback returns it to this image."""

    class_name: str | None = None
    app_id: str
    image: str
    image_digest: str | None = None


class Release(_Model):
    """What was live after a deployment: enough to return to it (version + every container's image).

    `image`, `image_digest` and `container_app_id` are the first container (older releases
    recorded only those); `containers` lists all of them."""

    id: str
    target: str
    environment: str
    script_name: str
    version_id: str | None = None
    image: str | None = None
    image_digest: str | None = None
    container_app_id: str | None = None
    migration_tag: str | None = None
    sha: str | None = None
    deployment_id: str
    created_at: datetime
    containers: list[ReleaseContainer] = Field(default_factory=list)

    @field_validator("containers", mode="before")
    @classmethod
    def _no_containers(cls, value: Any) -> Any:
        return [] if value is None else value  # a row written before the column was filled


class BuildRun(_Model):
    """A workflow run a parked deployment waits for (its check run names and links it)."""

    name: str
    url: str


class DeploymentError(_Model):
    code: str
    message: str
    step: str | None = None
    correlation_id: str | None = None


class Deployment(_Model):
    id: str
    kind: Literal["deploy", "rollback"] = "deploy"
    environment: str
    app_name: str
    script_name: str
    target: str
    repository: str | None = None
    sha: str | None = None
    ref: str | None = None
    pull_request: int | None = None
    installation_id: int | None = None
    trigger: str = "api"
    actor: str | None = None
    status: DeploymentStatus = "initiated"
    steps: list[Step] = Field(default_factory=initial_steps)
    options: DeployOptions = Field(default_factory=DeployOptions)
    checks: dict[str, str] = Field(default_factory=dict)
    estimated_cost: dict[str, Any] | None = None
    urls: dict[str, str] = Field(default_factory=dict)
    release: Release | None = None
    previous_release: Release | None = None
    #: Rollback deployments: the deployment rolled back and the release being restored.
    rollback_of: str | None = None
    rollback_target: Release | None = None
    reason: str | None = None
    attempt: int = 1
    max_attempts: int = 3
    error: DeploymentError | None = None
    correlation_id: str | None = None
    queue_position: int | None = None
    #: Set while the build gate parks it (queued, no lease): the workflow runs it waits for.
    waiting_for_build: list[BuildRun] = Field(default_factory=list)
    #: The resolved app description (AppSpec dump), minus module contents.
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def current_step(self) -> Step | None:
        for s in self.steps:
            if s.status in ("running", "failed"):
                return s
        for s in self.steps:
            if s.status == "pending":
                return s
        return None


LogLevel = Literal["debug", "info", "warn", "error"]


class LogLine(_Model):
    id: int
    timestamp: datetime
    level: LogLevel = "info"
    message: str
    step: str | None = None


EventKind = Literal["status", "step", "log"]


class DeploymentEvent(_Model):
    kind: EventKind
    deployment: Deployment
    step: Step | None = None
    log: LogLine | None = None


class PrepareRequest(_Model):
    """What a front door asks the engine to prepare.

    Exactly one source of the app description: `app` (already resolved), `config` (the REST
    API's shape: appName, containerImage, durableObjects, environmentVars) or `repository` + `sha`
    (the app description is read from the repository at that SHA). `repo_config` is the policy
    config a front door read from the default branch; environment settings come from it when given.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    environment: str
    app: Any | None = None  # bot.engine.appspec.AppSpec
    config: dict[str, Any] | None = None
    repository: str | None = None
    ref: str | None = None
    sha: str | None = None
    installation_id: int | None = None
    pull_request: int | None = None
    trigger: str = "api"
    actor: str | None = None
    repo_config: Any | None = None  # bot.engine.config.RepoConfig
