"""The error catalogue: one table maps every code to its HTTP status, retryability and advice.

Engine, clients and front doors raise `FlareshipError(code, ...)`; the HTTP layer turns it into
the REST API's error envelope (docs/rest-api.md) in one place, so no `except` block re-invents a status code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ErrorKind:
    code: str
    status: int
    message: str
    retryable: bool
    suggested_action: str
    #: Other statuses the code answers with, by name: a raise picks one (`variant=`), never a number.
    variants: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


def _kinds(*kinds: ErrorKind) -> dict[str, ErrorKind]:
    return {k.code: k for k in kinds}


CATALOGUE: dict[str, ErrorKind] = _kinds(
    # Authentication (seed)
    ErrorKind("AUTH_001", 502, "Invalid GitHub App credentials", False,
              "Check GITHUB_APP_ID and the private key; GitHub rejected the App's JWT"),
    ErrorKind("AUTH_002", 403, "GitHub installation access denied", False,
              "Install the App on the repository or grant it the permissions it asks for"),
    ErrorKind("AUTH_003", 401, "Cloudflare API token invalid", False,
              "Create a new Cloudflare API token and update the credentials"),
    ErrorKind("AUTH_004", 403, "Insufficient Cloudflare permissions", False,
              "Add the missing permission groups to the Cloudflare API token"),
    ErrorKind("AUTH_005", 401, "Token expired during operation", True,
              "Refresh the token and retry the deployment"),
    # Authentication (added)
    ErrorKind("AUTH_006", 403, "Not allowed", False,
              "Use a token with the needed scope, or ask a maintainer for the permission"),
    ErrorKind("AUTH_007", 401, "Missing or invalid credentials", False,
              "Send 'Authorization: Bearer <token>' with a token from 'flareship token create'"),
    # Deployment (seed)
    ErrorKind("DEPLOY_001", 400, "Configuration validation failed", False,
              "Fix the configuration named in the error and deploy again"),
    ErrorKind("DEPLOY_002", 402, "Resource quota exceeded", False,
              "Upgrade the Cloudflare plan or free resources, then deploy again"),
    ErrorKind("DEPLOY_003", 502, "Container upload failed", True,
              "Check the image reference and registry access, then retry"),
    ErrorKind("DEPLOY_004", 502, "Durable Object deployment failed", True,
              "Check the Durable Object classes and migrations, then retry"),
    ErrorKind("DEPLOY_005", 502, "DNS configuration failed", True,
              "Check the routes and custom domains of the environment, then retry"),
    ErrorKind("DEPLOY_006", 504, "Health check timeout", True,
              "Check the Worker's logs and the health-check path, then retry or roll back"),
    ErrorKind("DEPLOY_007", 500, "Rollback failed", False,
              "Roll back by hand to a known good version; see the deployment's logs",
              # Refused before anything changed (nothing to return to, a migration in the way).
              MappingProxyType({"refused": 409})),
    # Deployment (added)
    ErrorKind("DEPLOY_008", 502, "Worker upload failed", True,
              "Check the Worker's modules and bindings, then retry"),
    ErrorKind("DEPLOY_009", 409, "Environment busy or locked", True,
              "Wait for the running deployment or ask whoever locked the environment"),
    ErrorKind("DEPLOY_010", 409, "Operation not allowed in the deployment's current state", False,
              "Check the deployment's status first"),
    ErrorKind("DEPLOY_011", 424, "Dependency check failed", False,
              "Fix the failing dependency (image, Durable Object class, compatibility date)"),
    ErrorKind("DEPLOY_012", 409, "Resource conflict", False,
              "Rename the app or remove the conflicting resource"),
    # System (seed)
    ErrorKind("SYS_001", 500, "Internal server error", True,
              "Retry; if it persists, report it with the correlation id"),
    ErrorKind("SYS_002", 503, "Service temporarily unavailable", True,
              "Retry after a short wait"),
    ErrorKind("SYS_003", 429, "Rate limit exceeded", True,
              "Wait for the time given in Retry-After, then retry"),
    ErrorKind("SYS_004", 504, "Request timeout", True, "Retry after a short wait",
              # The client's own request body did not arrive in time (bot/server.py).
              MappingProxyType({"request_timeout": 408})),
    ErrorKind("SYS_005", 404, "Resource not found", False, "Check the id or path"),
    # System (added)
    ErrorKind("SYS_006", 400, "Malformed request", False,
              "Fix the request as the error describes and send it again",
              MappingProxyType({"unprocessable": 422, "too_large": 413, "unsupported_media_type": 415})),
)


class FlareshipError(Exception):
    """An error with a catalogue code; its HTTP status is the code's, or the named `variant`'s
    (never a number chosen by the raiser: `aiohttp_refusal` alone carries aiohttp's own)."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        step: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
        variant: str | None = None,
    ):
        kind = CATALOGUE[code]
        self.code = code
        self.kind = kind
        self.message = message or kind.message
        self.step = step
        self.status = kind.variants[variant] if variant is not None else kind.status
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.message}")

    @classmethod
    def aiohttp_refusal(cls, code: str, message: str, status: int) -> FlareshipError:
        """aiohttp's own refusal (unknown route, wrong method, body too large) in the envelope,
        with aiohttp's status: the one status that does not come from the catalogue."""
        error = cls(code, message)
        error.status = status
        return error

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    @property
    def suggested_action(self) -> str:
        return self.kind.suggested_action


def error_body(
    code: str,
    message: str | None = None,
    *,
    correlation_id: str,
    timestamp: str,
    step: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The REST API's error envelope, `{error: {...}}` (pure: no I/O, no clock)."""
    kind = CATALOGUE[code]
    return {
        "error": {
            "code": code,
            "message": message or kind.message,
            "details": {"step": step, "timestamp": timestamp, "correlationId": correlation_id, **(details or {})},
            "retryable": kind.retryable,
            "suggestedAction": kind.suggested_action,
        }
    }


def success_body(data: Any, *, correlation_id: str, timestamp: str, version: str) -> dict[str, Any]:
    """The REST API's success envelope, `{success, data, metadata}`."""
    return {
        "success": True,
        "data": data,
        "metadata": {"timestamp": timestamp, "version": version, "correlationId": correlation_id},
    }
