"""Probing Cloudflare credentials for the REST front door (`/deploy/validate`, `/auth/cloudflare/verify`).

Nothing is stored: a token is checked, its permissions probed, and the answer shaped for the
REST API's response bodies (handlers/api/models.py).
"""

from __future__ import annotations

import re
from typing import Any

from bot.cloudflare.accounts import PROBES
from bot.cloudflare.errors import (
    AuthenticationError,
    CloudflareError,
    NotFound,
    PermissionDenied,
)
from bot.engine.failures import catalogue_error, token_failure
from bot.engine.ports import CloudflareAccounts, Credentials
from bot.errors import FlareshipError
from bot.logs import register_secret

ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")


async def validate(cloudflare: CloudflareAccounts, environment: str, credentials: Credentials) -> dict[str, Any]:
    """Check a token + account: 401 bad token, 422 bad account id, 403 cannot deploy Workers."""
    token = credentials.api_token
    token = token.get_secret_value() if hasattr(token, "get_secret_value") else token
    account_id = credentials.account_id or ""
    if not ACCOUNT_ID.match(account_id):
        raise FlareshipError("SYS_006", "accountId must be 32 lowercase hexadecimal characters", variant="unprocessable",
                             details={"field": "credentials.accountId"})
    register_secret(token)
    client = cloudflare.for_token(token)
    try:
        await client.verify_token(account_id)
        report = await client.probe_permissions(account_id)
    except AuthenticationError as exc:
        raise token_failure(exc) from None
    except NotFound as exc:
        raise FlareshipError("AUTH_004", f"The token cannot access account {account_id} ({exc.public_message()})",
                             details={"missingPermission": "Account:Account Settings:Read"}) from None
    except PermissionDenied as exc:
        raise FlareshipError("AUTH_004", exc.public_message()) from None
    except CloudflareError as exc:
        raise catalogue_error(exc) from None
    if not report.granted.get("workers"):
        raise FlareshipError("AUTH_004", "The Cloudflare token cannot deploy Workers on this account",
                             details={"missingPermissions": report.missing_permissions})
    try:
        account = await client.get_account(account_id)
        plan = await client.account_plan(account_id, account=account,
                                         containers_ok=True if report.granted.get("containers") else
                                         (False if "containers" in report.plan_blocked else None))
    except CloudflareError as exc:
        raise catalogue_error(exc) from None
    return {
        "valid": True,
        "permissions": {
            "workers": bool(report.granted.get("workers")),
            "containers": bool(report.granted.get("containers")),
            "durableObjects": bool(report.granted.get("durableObjects")),
        },
        "accountInfo": {"id": account.get("id", account_id), "name": account.get("name", ""), "type": plan.type},
        "workersPlan": plan.workers_plan,
    }


async def verify_token(cloudflare: CloudflareAccounts, api_token: str, required_scopes: list[str]) -> dict[str, Any]:
    """`/auth/cloudflare/verify`: 401 invalid token, 403 naming a missing required scope."""
    register_secret(api_token)
    client = cloudflare.for_token(api_token)
    try:
        info = await client.verify_token(None)
        try:
            accounts = await client.list_accounts()
        except (PermissionDenied, NotFound):
            accounts = []
        scopes: set[str] = set()
        for account in accounts[:5]:
            report = await client.probe_permissions(account["id"])
            for name, ok in report.granted.items():
                if ok:
                    scopes.add(PROBES[name][1])
                    if PROBES[name][1].endswith(":Edit"):
                        scopes.add(PROBES[name][1][: -len(":Edit")] + ":Read")
    except CloudflareError as exc:
        raise token_failure(exc) from None
    missing = [s for s in required_scopes if s not in scopes]
    if missing:
        raise FlareshipError("AUTH_004", "The Cloudflare token lacks: " + ", ".join(missing),
                             details={"missingScopes": missing})
    return {
        "valid": True,
        "user": {"id": info.id, "email": None},
        "scopes": sorted(scopes),
        "accounts": [{"id": a.get("id"), "name": a.get("name"), "type": a.get("type", "standard")}
                     for a in accounts],
    }
