"""Every setting Flareship reads, validated once at start-up (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_REGISTRY_URL = "https://registry.cloudflare.com"
DEFAULT_WORKERS_URL_TEMPLATE = "https://{script}.{subdomain}.workers.dev"

#: Settings that may be suffixed `_<ENV>` to override them for one environment.
PER_ENVIRONMENT = ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID")


class SettingsError(Exception):
    """Raised when the process must not start; the message names every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Flareship cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


class CloudflareCredentials:
    """An environment's Cloudflare token and account, with the token kept secret."""

    __slots__ = ("api_token", "account_id")

    def __init__(self, api_token: SecretStr | None, account_id: str | None):
        self.api_token = api_token
        self.account_id = account_id

    def __repr__(self) -> str:
        return f"CloudflareCredentials(account_id={self.account_id!r}, api_token=***)"


class Settings(BaseSettings):
    """The operator's configuration, from environment variables (see PRODUCT.md)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: str = DEFAULT_GITHUB_API_URL
    #: Minimum seconds between two writes on one installation (GitHub asks for about one).
    github_write_interval: float = Field(default=1.0, ge=0)

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

    #: Per-environment overrides (`CLOUDFLARE_API_TOKEN_PRODUCTION`, ...), captured at construction.
    environment_overrides: dict[str, dict[str, str]] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _capture_environment_overrides(cls, values: dict) -> dict:
        if isinstance(values, dict) and "environment_overrides" not in values:
            overrides: dict[str, dict[str, str]] = {}
            for key, value in os.environ.items():
                upper = key.upper()
                for base in PER_ENVIRONMENT:
                    if upper.startswith(base + "_") and len(upper) > len(base) + 1:
                        env = upper[len(base) + 1 :].lower()
                        overrides.setdefault(env, {})[base] = value
            values = {**values, "environment_overrides": overrides}
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
            except (ValueError, TypeError, OSError):
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


def load_settings(**overrides) -> Settings:
    """Read the settings once; turn pydantic's errors into one SettingsError naming each field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError(problems) from None
