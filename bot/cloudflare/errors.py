"""Typed Cloudflare errors, keyed by Cloudflare's own codes.

The client turns every failed call into one of these and knows nothing of the deploy pipeline;
`bot/engine/failures.py` reads them as catalogue errors for the step they happened in, so the
same failure reads the same way in a check run, a comment and the REST envelope. Messages carry
Cloudflare's text (redacted) and codes, never the request's token.
"""

from __future__ import annotations

from typing import Any, TypedDict

from bot.logs import redact

#: Cloudflare codes that mean "the credentials are not accepted at all".
AUTH_CODES = {1000, 6003, 6111, 6103, 9106, 10001}
#: Codes that mean "valid token, but not allowed here".
PERMISSION_CODES = {9109, 10000, 10015, 10023}
#: Codes that mean "not found".
NOT_FOUND_CODES = {7003, 10007, 10025, 10090, 10092, 100146}
#: Worker Previews: the Preview does not exist (10025), it has no deployment yet (10222).
PREVIEW_MISSING_CODE = 10025
NO_PREVIEW_DEPLOYMENT_CODE = 10222
#: Plan limits.
QUOTA_CODES = {10075, 10037, 100103}


class ErrorItem(TypedDict):
    """One of an envelope's `errors`, as kept: its code (None when not a number) and redacted message."""

    code: int | None
    message: str


class CloudflareError(Exception):
    """Base of everything the Cloudflare client raises."""

    def public_message(self) -> str:
        return redact(str(self))

    def details(self) -> dict[str, Any]:
        return {}


class CloudflareAPIError(CloudflareError):
    """Cloudflare answered with a failure envelope: `status` and `errors: [{code, message}]`."""

    def __init__(self, status: int, errors: list[dict[str, Any]] | None = None, *, method: str = "", path: str = ""):
        self.status = status
        self.errors: list[ErrorItem] = [
            {"code": _as_int(e.get("code")), "message": redact(str(e.get("message", "")))}
            for e in (errors or [])
            if isinstance(e, dict)
        ]
        self.method = method
        self.path = path
        first: ErrorItem = self.errors[0] if self.errors else {"code": None, "message": f"HTTP {status}"}
        where = f" ({method} {path})" if method else ""
        super().__init__(f"Cloudflare error {first['code']}: {first['message']} [HTTP {status}]{where}")

    @property
    def code(self) -> int | None:
        """Cloudflare's code of the first error (`errors[0].code`)."""
        return self.errors[0]["code"] if self.errors else None

    @property
    def codes(self) -> set[int]:
        return {e["code"] for e in self.errors if e["code"] is not None}

    def details(self) -> dict[str, Any]:
        return {"cloudflare": {"status": self.status, "errors": self.errors}}


    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, errors={self.errors!r})"


class AuthenticationError(CloudflareAPIError):
    """The token is not accepted (invalid, disabled, expired, malformed header)."""

    @property
    def expired(self) -> bool:
        return any("expired" in e["message"].lower() for e in self.errors)


class PermissionDenied(CloudflareAPIError):
    """The token is valid but lacks a permission (or the account); `permission` names it when known."""

    def __init__(self, status, errors=None, *, method="", path="", permission: str | None = None):
        super().__init__(status, errors, method=method, path=path)
        self.permission = permission


class NotFound(CloudflareAPIError):
    """404 / 7003 / 10007 ...: the object (or the account id) does not exist."""


class ParentWorkerMissing(NotFound):
    """10007 from a Worker Previews call: the Worker a Preview hangs off does not exist yet.

    Raised by `bot/cloudflare/previews.py` (never by `classify`, since 10007 also means other
    things): the caller deploys the parent Worker first, or reports that it has to be.
    """

    def __init__(self, status, errors=None, *, method="", path="", worker: str = ""):
        super().__init__(status, errors, method=method, path=path)
        self.worker = worker

    def __str__(self) -> str:
        return (f"the Worker {self.worker!r} does not exist yet on this account, so it has no Previews: deploy"
                f" it first (Cloudflare error {self.code} [HTTP {self.status}] {self.method} {self.path})")


class QuotaExceeded(CloudflareAPIError):
    """10075 (needs Workers Paid), 10037 (too many Workers), 100103 (tag limit)."""


class ValidationFailed(CloudflareAPIError):
    """Cloudflare refused the content (10021 script error, 10027 too large, 10079 migration tag ...)."""


class Conflict(CloudflareAPIError):
    """The request clashes with current state (10220 rollback blocked, 10031 subdomain taken, 409)."""


class RateLimited(CloudflareAPIError):
    """429 / 971. `retry_after` in seconds (Cloudflare blocks the token for 5 minutes)."""

    def __init__(self, status=429, errors=None, *, method="", path="", retry_after: float | None = None):
        super().__init__(status, errors or [{"code": 971, "message": "rate limited"}], method=method, path=path)
        self.retry_after = retry_after


class ServerError(CloudflareAPIError):
    """5xx from Cloudflare."""


class BudgetExhausted(CloudflareError):
    """Flareship's own request budget for this token is spent; waiting would take too long."""

    def __init__(self, wait_seconds: float):
        self.retry_after = wait_seconds
        super().__init__(f"Cloudflare request budget for this token is spent; retry in {wait_seconds:.0f} s")


class TransportError(CloudflareError):
    """The request never got an answer: connection refused/reset, protocol error."""

    def __init__(self, message: str, *, method: str = "", path: str = ""):
        self.method = method
        self.path = path
        super().__init__(redact(f"{message} ({method} {path})" if method else message))


class CloudflareTimeout(TransportError):
    """No answer within the client's timeout."""


TimeoutError_ = CloudflareTimeout  # older name


class TokenInactive(AuthenticationError):
    """Verification succeeded but the token is not usable: status disabled/expired, or past expires_on."""

    def __init__(self, token_status: str, *, expires_on: str | None = None):
        self.token_status = token_status
        self.expires_on = expires_on
        super().__init__(401, [{"code": 1000, "message": f"API token is {token_status}"}])


class UnexpectedResponse(CloudflareError):
    """Cloudflare answered something that is not an envelope (HTML error page, bad JSON)."""

    def __init__(self, status: int, snippet: str, *, method: str = "", path: str = ""):
        self.status = status
        super().__init__(redact(f"unexpected response HTTP {status} from {method} {path}: {snippet[:200]}"))


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def classify(status: int, errors: list[dict[str, Any]], *, method: str = "", path: str = "",
             retry_after: float | None = None) -> CloudflareAPIError:
    """Pick the typed exception for a failure envelope (pure)."""
    codes = {_as_int(e.get("code")) for e in errors if isinstance(e, dict)}
    kw = {"method": method, "path": path}
    if status == 429 or 971 in codes:
        return RateLimited(status, errors, retry_after=retry_after, **kw)
    if codes & QUOTA_CODES:
        return QuotaExceeded(status, errors, **kw)
    if status == 401 or codes & AUTH_CODES:
        return AuthenticationError(status, errors, **kw)
    if codes & PERMISSION_CODES or status == 403:
        return PermissionDenied(status, errors, **kw)
    if status >= 500:
        return ServerError(status, errors, **kw)
    if status == 404 or codes & NOT_FOUND_CODES:
        return NotFound(status, errors, **kw)
    if status == 409 or codes & {10220, 10031}:
        return Conflict(status, errors, **kw)
    return ValidationFailed(status, errors, **kw)
