"""Every setting Flareship reads, validated once at start-up (never at import time).

Sources, strongest first: the process environment, `<NAME>_FILE` for secret settings (Docker and
Kubernetes secrets), then `.env` in the working directory (README.md "Running it for real").
Only `load_settings` reads `.env` and the `_FILE` files, so a `Settings(...)` built in code
(tests, the demo) sees the environment alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_GITHUB_URL = "https://github.com"
DEFAULT_CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_REGISTRY_URL = "https://registry.cloudflare.com"
DEFAULT_WORKERS_URL_TEMPLATE = "https://{script}.{subdomain}.workers.dev"

#: Settings that may be suffixed `_<ENV>` to override them for one environment.
PER_ENVIRONMENT = ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID")
#: Settings holding a secret; each may instead name a file holding it as `<NAME>_FILE`
#: (`CLOUDFLARE_API_TOKEN_<ENV>` too). DATABASE_URL is one: it can carry a password.
SECRET_SETTINGS = ("GITHUB_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET", "CLOUDFLARE_API_TOKEN", "METRICS_TOKEN",
                   "DATABASE_URL")
#: The file `load_settings` reads, relative to the working directory.
ENV_FILE = ".env"


class SettingsError(Exception):
    """Raised when the process must not start; the message names every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Flareship cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


class CloudflareCredentials:
    """An environment's Cloudflare token and account, with the token kept secret."""

    __slots__ = ("account_id", "api_token")

    def __init__(self, api_token: SecretStr | None, account_id: str | None):
        self.api_token = api_token
        self.account_id = account_id

    def __repr__(self) -> str:
        return f"CloudflareCredentials(account_id={self.account_id!r}, api_token=***)"


class Settings(BaseSettings):
    """The operator's configuration, from environment variables (README.md lists them)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = DEFAULT_GITHUB_API_URL
    #: GitHub's web address (the setup flow's App form); GitHub Enterprise Server: https://HOST.
    github_url: str = DEFAULT_GITHUB_URL
    #: Minimum seconds between two writes on one installation (GitHub asks for about one).
    github_write_interval: float = Field(default=1.0, ge=0)
    #: Seconds the PR reporter gathers a deployment's events before one write of its check run,
    #: GitHub deployment status and comment (fewer writes than one per event).
    github_report_interval: float = Field(default=1.0, gt=0)
    #: Seconds before the reporter's first retry of a failed write (doubling, at most 30 s).
    github_report_retry_delay: float = Field(default=1.0, gt=0)
    #: Seconds between looks for deployments that ended without GitHub showing it (the replica that
    #: ran them died first, or GitHub kept failing), and how long after their end they are taken up.
    github_report_recovery_seconds: float = Field(default=30.0, gt=0)
    #: Seconds between the engine's scheduler passes when nothing wakes it, and between health
    #: probes of a Worker just deployed (step 8).
    deployment_poll_seconds: float = Field(default=1.0, gt=0)
    health_check_interval: float = Field(default=1.0, gt=0)
    #: Seconds between looks at a SHA's workflow runs while a deployment waits for its CI build
    #: (a `workflow_run` webhook wakes it sooner).
    build_poll_seconds: float = Field(default=15.0, gt=0)
    #: Seconds before a failed preview removal is first tried again (doubling).
    preview_removal_retry_seconds: float = Field(default=30.0, gt=0)
    #: The log stream (SSE): seconds between looks for new lines, between keep-alive comments,
    #: and how long a client that takes no event may stall before it is dropped.
    sse_poll_seconds: float = Field(default=1.0, gt=0)
    sse_keepalive_seconds: float = Field(default=15.0, gt=0)
    sse_write_timeout_seconds: float = Field(default=30.0, gt=0)

    cloudflare_api_url: str = DEFAULT_CLOUDFLARE_API_URL
    cloudflare_api_token: SecretStr | None = None
    cloudflare_account_id: str | None = None
    container_registry_url: str = DEFAULT_REGISTRY_URL
    workers_url_template: str = DEFAULT_WORKERS_URL_TEMPLATE

    database_url: str = "sqlite:///flareship.db"
    public_url: str = "http://127.0.0.1:8000"
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    metrics_token: SecretStr | None = None
    #: Replicas (README "Running several replicas"): how long a silent replica keeps its deployment
    #: lease and its webhook claims, and the Cloudflare request budget per token (shared on PostgreSQL).
    deployment_lease_seconds: float = Field(default=30.0, gt=0)
    dispatcher_owner_timeout: float = Field(default=10.0, gt=0)
    cloudflare_budget_limit: int = Field(default=1200, ge=1)
    cloudflare_budget_window: float = Field(default=300.0, gt=0)
    #: Previews: seconds between sweeps of the recorded previews (closed PRs removed, missing ones marked).
    preview_sweep_seconds: float = Field(default=600.0, gt=0)

    #: Per-environment overrides (`CLOUDFLARE_API_TOKEN_PRODUCTION`, ...), captured at construction.
    environment_overrides: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _capture_environment_overrides(cls, values: dict) -> dict:
        if isinstance(values, dict) and "environment_overrides" not in values:
            values = {**values, "environment_overrides": environment_overrides(os.environ)}
        return values

    # -- derived values ---------------------------------------------------------------

    @property
    def async_database_url(self) -> str:
        """DATABASE_URL in the async-driver form SQLAlchemy needs."""
        return normalize_database_url(self.database_url)

    def private_key_pem(self) -> str | None:
        if self.github_private_key is not None:
            # Operators often paste the key with literal "\n" into one env var.
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        return None

    def cloudflare_credentials(self, environment: str) -> CloudflareCredentials:
        """The token and account for an environment: `_<ENV>` overrides beat the plain ones."""
        override = self.environment_overrides.get(environment.lower(), {})
        token = override.get("CLOUDFLARE_API_TOKEN")
        return CloudflareCredentials(
            SecretStr(token) if token else self.cloudflare_api_token,
            override.get("CLOUDFLARE_ACCOUNT_ID") or self.cloudflare_account_id,
        )

    def problems_for_serving(self) -> list[str]:
        """Every reason `flareship serve` must refuse to start (empty when ready)."""
        problems = []
        if not self.github_webhook_secret or not self.github_webhook_secret.get_secret_value():
            problems.append("GITHUB_WEBHOOK_SECRET is missing: webhooks cannot be verified")
        if not self.github_app_id:
            problems.append("GITHUB_APP_ID is missing")
        elif not self.github_app_id.strip().isdigit():
            problems.append("GITHUB_APP_ID must be the App's numeric id")
        if self.github_private_key is None and self.github_private_key_path is None:
            problems.append("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH is missing")
        else:
            try:
                pem = self.private_key_pem() or ""
                load_pem_private_key(pem.encode(), password=None)
            except FileNotFoundError:
                problems.append(f"GITHUB_PRIVATE_KEY_PATH does not exist: {self.github_private_key_path}")
            except OSError as exc:
                problems.append(f"GITHUB_PRIVATE_KEY_PATH cannot be read: {self.github_private_key_path}: "
                                f"{exc.strerror or type(exc).__name__}")
            except (ValueError, TypeError):
                problems.append("the GitHub private key does not parse as an unencrypted PEM RSA key")
        try:
            normalize_database_url(self.database_url)
        except ValueError as exc:
            problems.append(str(exc))
        return problems


def normalize_database_url(url: str) -> str:
    """Map the accepted DATABASE_URL forms onto SQLAlchemy async driver URLs."""
    if url.startswith("sqlite+aiosqlite://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith("postgresql+asyncpg://"):
        return url
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(
        "DATABASE_URL must start with sqlite:///, sqlite+aiosqlite:///, postgresql:// or postgresql+asyncpg://"
    )


def environment_overrides(raw: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`CLOUDFLARE_API_TOKEN_PRODUCTION=...` -> {"production": {"CLOUDFLARE_API_TOKEN": ...}}."""
    overrides: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        upper = key.upper()
        if upper.endswith("_FILE"):
            continue  # a file reference, resolved by read_secret_files, never an environment named "file"
        for base in PER_ENVIRONMENT:
            if upper.startswith(base + "_") and len(upper) > len(base) + 1:
                env = upper[len(base) + 1 :].lower()
                overrides.setdefault(env, {})[base] = value
    return overrides


def _upper(values: Mapping[str, str | None]) -> dict[str, str]:
    return {key.upper(): value for key, value in values.items() if value is not None}


def read_env_file(env_file: str | Path | None) -> dict[str, str]:
    """`.env`'s variables (names upper-cased); {} when there is none. OSError when it cannot be read."""
    if env_file is None or not Path(env_file).is_file():
        return {}
    with open(env_file, encoding="utf-8"):  # raises for an unreadable file; dotenv_values would hide it
        pass
    return _upper(dotenv_values(env_file))


def _is_secret(name: str) -> bool:
    return name in SECRET_SETTINGS or name.startswith("CLOUDFLARE_API_TOKEN_")


def read_secret_files(*layers: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Resolve `<SECRET>_FILE` variables: ({NAME: contents without trailing newlines}, problems).

    `layers` are the sources strongest first (environment, then `.env`): a stronger layer's NAME
    beats a weaker one's NAME_FILE and the other way round; both in one layer is a problem.
    The problems name the variable and the path, never the contents.
    """
    names = sorted({key[: -len("_FILE")] for layer in layers for key in layer
                    if key.endswith("_FILE") and _is_secret(key[: -len("_FILE")])})
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in names:
        key = name + "_FILE"
        layer = next((layer for layer in layers if layer.get(name) or layer.get(key)), None)
        if layer is None or not layer.get(key):
            continue  # NAME itself is set where it counts (or NAME_FILE is empty)
        if layer.get(name):
            problems.append(f"{name} and {key} are both set: set only one of them")
            continue
        path = layer[key]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(f"{key}: {path} is not UTF-8 text")
            continue
        except OSError as exc:
            problems.append(f"{key}: cannot read {path}: {exc.strerror or type(exc).__name__}")
            continue
        values[name] = text.rstrip("\r\n")
    return values, problems


def _describe(exc: ValidationError) -> tuple[list[str], set[str]]:
    """pydantic's errors as one line each (without the rejected value), and the fields they name."""
    problems, fields = [], set()
    for err in exc.errors():
        fields.add(str(err["loc"][0]) if err["loc"] else "")
        name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
        problems.append(f"{name}: {err['msg']}")
    return problems, fields


def _build(overrides: dict[str, Any], env_file: str | Path | None) -> tuple[Settings, list[str], set[str]]:
    """Settings from every source, plus every problem found on the way (none hides another).

    A field that fails validation is reported and then taken at its default, so the checks that
    follow (`problems_for_serving`) still run on everything else.
    """
    problems: list[str] = []
    try:
        dotenv = read_env_file(env_file)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{env_file}: cannot read it: {getattr(exc, 'strerror', None) or type(exc).__name__}")
        dotenv, env_file = {}, None
    environ = _upper(dict(os.environ))
    from_files, file_problems = read_secret_files(environ, dotenv)
    problems += file_problems
    wanted = {key[: -len("_FILE")] for key in {**dotenv, **environ} if key.endswith("_FILE")}
    unusable = {name.lower() for name in wanted if _is_secret(name) and name not in from_files}
    values: dict[str, Any] = {name.lower(): value for name, value in from_files.items()
                              if name.lower() in Settings.model_fields}
    values["environment_overrides"] = environment_overrides({**dotenv, **environ, **from_files})
    values.update(overrides)
    try:
        return Settings(_env_file=env_file, **values), problems, unusable
    except ValidationError as exc:
        found, fields = _describe(exc)
    problems += found
    defaults = {name: Settings.model_fields[name].get_default(call_default_factory=True)
                for name in fields if name in Settings.model_fields}
    try:
        return Settings(_env_file=env_file, **{**values, **defaults}), problems, unusable | fields
    except ValidationError as exc:  # a default that fails would be a bug here; still one clear error
        raise SettingsError(problems + _describe(exc)[0]) from None


def load_settings(*, env_file: str | Path | None = ENV_FILE, **overrides: Any) -> Settings:
    """Read the settings once; raise one SettingsError naming every invalid or unreadable one."""
    settings, problems, _ = _build(overrides, env_file)
    if problems:
        raise SettingsError(problems)
    return settings


def load_serving_settings(*, env_file: str | Path | None = ENV_FILE, **overrides: Any) -> Settings:
    """The settings `flareship serve` needs, or one SettingsError listing all that is wrong with them."""
    settings, problems, unusable = _build(overrides, env_file)
    for problem in settings.problems_for_serving():
        # "X is missing" after "X_FILE: cannot read ..." (or "X: invalid") would say the same twice.
        if not any(problem.startswith(name.upper() + " ") for name in unusable):
            problems.append(problem)
    if problems:
        raise SettingsError(problems)
    return settings
