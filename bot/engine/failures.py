"""Cloudflare's typed errors, read as catalogue errors: the one place that knows both.

The Cloudflare client raises the types of `bot/cloudflare/errors.py` and knows nothing of the
pipeline; this module decides what a failure means for the step it happened in.
"""

from __future__ import annotations

from bot.cloudflare.errors import (
    AuthenticationError,
    BudgetExhausted,
    CloudflareAPIError,
    CloudflareError,
    CloudflareTimeout,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServerError,
    TokenInactive,
    TransportError,
    UnexpectedResponse,
)
from bot.cloudflare.registry import RegistryError
from bot.engine.model import AUTHENTICATE, STEP_ERROR_CODES, VALIDATE
from bot.errors import FlareshipError

#: Codes a registry failure may take; any other step's code reads as a container upload failure.
_REGISTRY_CODES = ("DEPLOY_003", "DEPLOY_011", "DEPLOY_007")
#: Catalogue codes of an outage or a timeout, which a step reports as its own failure.
_OUTAGE_CODES = ("SYS_001", "SYS_002", "SYS_004")


def catalogue_error(exc: CloudflareError, step: str | None = None) -> FlareshipError:
    """What `exc` is in the catalogue when it happened in `step` (None: outside the pipeline)."""
    message = exc.public_message()
    step_code = STEP_ERROR_CODES.get(step or "")
    if isinstance(exc, RegistryError):
        code = step_code if step_code in _REGISTRY_CODES else "DEPLOY_003"
        return FlareshipError(code or "DEPLOY_003", message, step=step,
                              details={"registry": {"status": exc.status, "errors": exc.errors}})
    if isinstance(exc, BudgetExhausted):
        return FlareshipError("SYS_003", str(exc), step=step, retry_after=exc.retry_after)
    if isinstance(exc, CloudflareTimeout):
        return FlareshipError("SYS_004", f"Cloudflare did not answer in time: {message}", step=step)
    if isinstance(exc, TransportError):
        return FlareshipError("SYS_002", f"Cloudflare unreachable: {message}", step=step)
    if isinstance(exc, UnexpectedResponse):
        return FlareshipError("SYS_002" if exc.status >= 500 else "SYS_001", message, step=step)
    if not isinstance(exc, CloudflareAPIError):
        return FlareshipError(step_code or "SYS_001", message, step=step)
    details = exc.details()
    if isinstance(exc, AuthenticationError):
        # A token that expires after authentication succeeded is AUTH_005 (bot/errors.py).
        mid_operation = step not in (None, AUTHENTICATE, VALIDATE)
        return FlareshipError("AUTH_005" if exc.expired and mid_operation else "AUTH_003", message, step=step,
                              details=details)
    if isinstance(exc, PermissionDenied):
        if exc.permission:
            message = f"The Cloudflare token lacks the '{exc.permission}' permission ({message})"
            details["missingPermission"] = exc.permission
        return FlareshipError("AUTH_004", message, step=step, details=details)
    if isinstance(exc, QuotaExceeded):
        return FlareshipError("DEPLOY_002", message, step=step, details=details)
    if isinstance(exc, RateLimited):
        return FlareshipError("SYS_003", message, step=step, details=details, retry_after=exc.retry_after)
    if isinstance(exc, ServerError):
        return FlareshipError("SYS_002", message, step=step, details=details)
    code = step_code or "SYS_001"
    if code == "AUTH_003":  # a non-auth failure while authenticating is Cloudflare misbehaving
        code = "SYS_002" if exc.status >= 500 else "AUTH_003"
    return FlareshipError(code, message, step=step, details=details)


def step_failure(exc: CloudflareError, step: str) -> FlareshipError:
    """A failure in a pipeline step: as `catalogue_error`, except that a rejected token means it was
    revoked or expired while the deployment ran (it was accepted in step 2), and an outage or a
    timeout reads as the step's own failure (the cause kept in the details)."""
    error = catalogue_error(exc, step)
    if step == AUTHENTICATE:
        return error
    if error.code == "AUTH_003":
        return FlareshipError("AUTH_005", error.message, step=step, details=error.details)
    if error.code in _OUTAGE_CODES:
        details = dict(error.details)
        details["cause"] = error.code
        return FlareshipError(STEP_ERROR_CODES[step], error.message, step=step, details=details)
    return error


def token_failure(exc: CloudflareError, step: str | None = None) -> FlareshipError:
    """A failure while checking a token (REST validate/verify, or step 2): the token's own state
    first (inactive, rejected), anything else as `step_failure` (`catalogue_error` outside a step)."""
    if isinstance(exc, TokenInactive):
        code = "AUTH_005" if step is not None and exc.token_status == "expired" else "AUTH_003"
        return FlareshipError(code, f"The Cloudflare token is {exc.token_status}", step=step)
    if isinstance(exc, AuthenticationError):
        return FlareshipError("AUTH_003", exc.public_message(), step=step)
    return step_failure(exc, step) if step is not None else catalogue_error(exc)
