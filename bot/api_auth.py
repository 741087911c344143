"""API-token scopes and token values, as pure functions (no I/O).

Scopes: `read` (every GET), `deploy:<env>` (validate, prepare, deploy, retry, rollback and
cancel for that environment), `admin` (everything, including GitHub tokens and API tokens).
Tokens are `fls_` + 43 random URL-safe characters; only their SHA-256 is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "fls_"
_SCOPE = re.compile(r"^(read|admin|deploy:[a-z][a-z0-9_-]{0,31})$")

#: Actions a `deploy:<env>` scope covers (for that environment only).
DEPLOY_ACTIONS = frozenset({"validate", "prepare", "deploy", "retry", "rollback", "cancel"})
ACTIONS = ("read", *sorted(DEPLOY_ACTIONS), "admin")


class ScopeError(ValueError):
    pass


def parse_scopes(values: list[str] | tuple[str, ...]) -> list[str]:
    """Validate and de-duplicate scopes, keeping their order; raise ScopeError naming a bad one."""
    if not values:
        raise ScopeError("at least one scope is required (read, deploy:<env>, admin)")
    seen: list[str] = []
    for value in values:
        scope = value.strip()
        if not _SCOPE.match(scope):
            raise ScopeError(f"unknown scope {value!r}: use read, deploy:<env> or admin")
        if scope not in seen:
            seen.append(scope)
    return seen


def allows(scopes: list[str] | tuple[str, ...], action: str, environment: str | None = None) -> bool:
    """May a token with `scopes` perform `action` (on `environment`, for deploy actions)?"""
    if "admin" in scopes:
        return True
    if action == "read":
        return "read" in scopes
    if action in DEPLOY_ACTIONS:
        return environment is not None and f"deploy:{environment}" in scopes
    return False


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 200


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
