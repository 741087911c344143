"""`.github/flareship.yml`: the repository's deploy policy and app description, validated strictly.

Pure: text in, `RepoConfig` out, or `FlareshipError(DEPLOY_001)` naming the offending field.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.engine.build import BuildConfig
from bot.errors import FlareshipError

CONFIG_PATH = ".github/flareship.yml"

SCRIPT_NAME = re.compile(r"^[a-z0-9_][a-z0-9-_]*$")
CLASS_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
BINDING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
INSTANCE_TYPES = ("lite", "basic", "standard-1", "standard-2", "standard-3", "standard-4")
PERMISSIONS = ("read", "triage", "write", "maintain", "admin")
#: The name commands, check runs and `GET /deployments?environment=` use for every PR's preview.
PREVIEW_ENVIRONMENT = "preview"


def _class_name(value: str) -> str:
    if not CLASS_NAME.match(value):
        raise ValueError("must be a JavaScript class name")
    return value


#: A Durable Object / container class name as JavaScript allows it.
ClassName = Annotated[str, AfterValidator(_class_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CustomInstanceType(_Strict):
    """wrangler's custom instance type (containers/config.ts: lite's values where one is unset)."""

    vcpu: float = Field(default=0.0625, gt=0)
    memory_mib: int = Field(default=256, gt=0)
    disk_mb: int = Field(default=2000, gt=0)


class ContainerConfig(_Strict):
    image: str = Field(min_length=1, max_length=512)
    class_name: ClassName = "AppContainer"
    #: A named type, or `{vcpu, memory_mib, disk_mb}` (both forms wrangler takes).
    instance_type: Literal["dev", "lite", "basic", "standard", "standard-1", "standard-2", "standard-3",
                           "standard-4"] | CustomInstanceType = "basic"
    max_instances: int = Field(default=5, ge=1, le=1000)
    #: The application's name (default `{script}-{class_name lowercased}`).
    name: str | None = Field(default=None, min_length=1, max_length=128)
    #: One step's percentage, or every step's (wrangler: 100 below two instances, else [10, 100]).
    rollout_step_percentage: int | list[Annotated[int, Field(ge=1, le=100)]] | None = Field(default=None)
    rollout_kind: Literal["full_auto", "full_manual", "none"] | None = None

    @field_validator("rollout_step_percentage")
    @classmethod
    def _steps(cls, v: int | list[int] | None) -> int | list[int] | None:
        if isinstance(v, int) and not 1 <= v <= 100:
            raise ValueError("must be a percentage (1-100)")
        if isinstance(v, list) and (not v or v[-1] != 100):
            raise ValueError("the last step must be 100")
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if any(c.isspace() for c in v):
            raise ValueError("must not contain whitespace")
        return v


class DurableObjectConfig(_Strict):
    class_name: ClassName
    binding: str | None = None
    #: The Worker that implements the class (a binding to another script's Durable Object).
    script_name: str | None = None
    environment: str | None = None

    @field_validator("binding")
    @classmethod
    def _binding(cls, v: str | None) -> str | None:
        if v is not None and not BINDING_NAME.match(v):
            raise ValueError("must be an identifier (letters, digits, underscore)")
        return v


def _check_date(v: str | None) -> str | None:
    if v is None:
        return v
    if not isinstance(v, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        raise ValueError("must be a date YYYY-MM-DD")
    try:
        date.fromisoformat(v)
    except ValueError:
        raise ValueError("is not a valid calendar date") from None
    return v


class AppConfig(_Strict):
    name: str | None = None
    main: str | None = None
    compatibility_date: str | None = None
    compatibility_flags: list[str] | None = None
    container: ContainerConfig | None = None
    durable_objects: list[DurableObjectConfig] | None = None
    vars: dict[str, Any] | None = None
    #: Deploy what CI built (docs/build-workflow.md; bot/engine/build.py).
    build: BuildConfig | None = None

    @field_validator("compatibility_date", mode="before")
    @classmethod
    def _date(cls, v: Any) -> Any:
        if isinstance(v, date):  # YAML turns an unquoted date into a date
            v = v.isoformat()
        return _check_date(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and (not SCRIPT_NAME.match(v) or len(v) > 54):
            raise ValueError("must be lowercase letters, digits, '-' or '_' (at most 54 characters)")
        return v

    @field_validator("main")
    @classmethod
    def _main(cls, v: str | None) -> str | None:
        if v is not None:
            parts = v.replace("\\", "/").split("/")
            if v.startswith("/") or ".." in parts or not parts[-1]:
                raise ValueError("must be a relative file path inside the repository")
        return v

    @field_validator("durable_objects", mode="before")
    @classmethod
    def _dos(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"class_name": item} if isinstance(item, str) else item for item in v]
        return v

    @field_validator("vars")
    @classmethod
    def _vars(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        for key in v or {}:
            if not BINDING_NAME.match(str(key)):
                raise ValueError(f"variable name {key!r} must be an identifier")
        return v


class HealthCheckConfig(_Strict):
    path: str = "/"
    timeout_seconds: float = Field(default=60, gt=0, le=1800)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v


class EnvironmentConfig(_Strict):
    required_permission: Literal["read", "triage", "write", "maintain", "admin"] | None = None
    allowed_users: list[str] = Field(default_factory=list)
    auto_deploy: bool = False
    require_approval: bool = False
    require_checks: bool = False
    after: str | None = None
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    url: str | None = None
    script_name: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("script_name")
    @classmethod
    def _script(cls, v: str | None) -> str | None:
        if v is not None and (not SCRIPT_NAME.match(v) or len(v) > 63):
            raise ValueError("must be lowercase letters, digits, '-' or '_'")
        return v


def default_permission(environment: str) -> str:
    return "maintain" if environment == "production" else "write"


class LabelsConfig(_Strict):
    prefix: str = Field(default="deploy:", min_length=1, max_length=40)


class CostConfig(_Strict):
    """Usage assumptions for the monthly estimate (see bot.engine.cost.UsageAssumptions)."""

    requests_per_month: float | None = Field(default=None, ge=0)
    cpu_ms_per_request: float | None = Field(default=None, ge=0)
    durable_object_requests_per_month: float | None = Field(default=None, ge=0)
    durable_object_active_hours_per_month: float | None = Field(default=None, ge=0)
    container_active_hours_per_month: float | None = Field(default=None, ge=0)
    average_running_instances: float | None = Field(default=None, ge=0)


class PreviewsConfig(_Strict):
    """`previews:` (README.md "Previews"): one preview per pull request, hung off the `from` environment."""

    enabled: bool = False
    #: push: every push to an open PR (authors meeting `from`'s permission); comment: only `/deploy preview`.
    trigger: Literal["push", "comment"] = "push"
    #: The environment whose Cloudflare token, account, parent Worker and bindings a preview uses.
    from_: str = Field(default="staging", alias="from")
    #: Open previews per repository; a PR over it is told why instead of evicting another.
    max: int = Field(default=20, ge=1, le=1000)
    #: previews: Cloudflare's Worker Previews of `from`'s script; script: a Worker `{script}-pr-<N>` per PR.
    mode: Literal["previews", "script"] = "previews"
    #: Previews run the PR's code with the account's bindings: fork PRs only when this says so.
    allow_forks: bool = False


def _default_environments() -> dict[str, EnvironmentConfig]:
    return {"staging": EnvironmentConfig(), "production": EnvironmentConfig()}


class RepoConfig(_Strict):
    app: AppConfig = Field(default_factory=AppConfig)
    environments: dict[str, EnvironmentConfig] = Field(default_factory=_default_environments)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    allow_forks: bool = False
    default_environment: str | None = None
    cost: CostConfig = Field(default_factory=CostConfig)
    previews: PreviewsConfig = Field(default_factory=PreviewsConfig)

    @field_validator("environments", mode="before")
    @classmethod
    def _envs(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({} if val is None else val) for k, val in v.items()}
        return v

    @model_validator(mode="after")
    def _check(self) -> RepoConfig:
        for name, env in self.environments.items():
            if not ENV_NAME.match(name):
                raise ValueError(f"environment name {name!r} must be lowercase letters, digits, '-' or '_'")
            if env.after is not None and env.after not in self.environments:
                raise ValueError(f"environments.{name}.after names unknown environment {env.after!r}")
            if env.after == name:
                raise ValueError(f"environments.{name}.after cannot name itself")
        if self.default_environment and self.default_environment not in self.environments:
            raise ValueError(f"default_environment {self.default_environment!r} is not an environment")
        if self.previews.enabled:
            if PREVIEW_ENVIRONMENT in self.environments:
                raise ValueError(f"environments.{PREVIEW_ENVIRONMENT}: the name is taken by previews "
                                 "(rename the environment, or leave previews.enabled off)")
            if self.previews.from_ not in self.environments:
                raise ValueError(f"previews.from names unknown environment {self.previews.from_!r} "
                                 f"(defined: {', '.join(sorted(self.environments)) or 'none'})")
        return self

    def environment(self, name: str) -> EnvironmentConfig:
        """The environment's settings; DEPLOY_001 when the config does not define it."""
        env = self.environments.get(name)
        if env is None:
            raise FlareshipError(
                "DEPLOY_001",
                f"environment {name!r} is not defined in {CONFIG_PATH} (defined: {', '.join(sorted(self.environments)) or 'none'})",
                details={"field": f"environments.{name}"},
            )
        return env

    def required_permission(self, environment: str) -> str:
        env = self.environments.get(environment)
        return (env.required_permission if env and env.required_permission else None) or default_permission(environment)

    @property
    def default_env(self) -> str:
        if self.default_environment:
            return self.default_environment
        if "staging" in self.environments:
            return "staging"
        return next(iter(self.environments), "staging")


def _field_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after", "function-before")) or "(root)"


def validation_error(exc: ValidationError, source: str = CONFIG_PATH) -> FlareshipError:
    """One DEPLOY_001 naming the first bad field (all of them in details)."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "str", "dict", "list[", "literal"))))
        field = _field_of(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append({"field": field, "message": msg})
    first = problems[0] if problems else {"field": "(root)", "message": "invalid"}
    return FlareshipError(
        "DEPLOY_001",
        f"{source}: {first['field']}: {first['message']}",
        details={"field": first["field"], "problems": problems},
    )


def parse_repo_config(yaml_text: str | bytes | None) -> RepoConfig:
    """Parse and validate the YAML text; empty text gives the defaults."""
    if isinstance(yaml_text, bytes):
        try:
            yaml_text = yaml_text.decode("utf-8")
        except UnicodeDecodeError:
            raise FlareshipError("DEPLOY_001", f"{CONFIG_PATH} is not UTF-8 text", details={"field": "(file)"}) from None
    try:
        data = yaml.safe_load(yaml_text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise FlareshipError(
            "DEPLOY_001", f"{CONFIG_PATH} is not valid YAML{where}", details={"field": "(file)"}
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FlareshipError("DEPLOY_001", f"{CONFIG_PATH} must be a mapping at the top level", details={"field": "(root)"})
    return parse_repo_config_data(data)


def parse_repo_config_data(data: dict[str, Any]) -> RepoConfig:
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
