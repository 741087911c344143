"""Token verification, permission probes, account info and plan.

Cloudflare has no cheap call that lists what a token may do (reading the token's policies needs
API Tokens Read, which deploy tokens rarely have), so - like wrangler - Flareship verifies the
token and then *probes* the calls a deploy needs, naming the permission behind each refusal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.cloudflare.errors import (
    AuthenticationError,
    CloudflareAPIError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TokenInactive,
)
from bot.cloudflare.transport import CloudflareTransport

#: probe name -> (path under /accounts/{id}, the permission its refusal means)
PROBES: dict[str, tuple[str, str]] = {
    "account": ("", "Account:Account Settings:Read"),
    "workers": ("/workers/scripts", "Account:Workers Scripts:Edit"),
    "durableObjects": ("/workers/durable_objects/namespaces", "Account:Workers Scripts:Edit"),
    "subdomain": ("/workers/subdomain", "Account:Workers Scripts:Edit"),
    "containers": ("/containers/me", "Account:Containers:Edit"),
}


@dataclass
class TokenInfo:
    id: str | None
    status: str
    kind: str  # "user" | "account"
    expires_on: str | None = None
    not_before: str | None = None


#: The permission Cloudflare's GET /user needs; an account-owned token cannot hold it.
USER_DETAILS_PERMISSION = "User:User Details:Read"
#: Why a token's user could not be read (`TokenUser.reason`).
ACCOUNT_OWNED_TOKEN = "account_owned_token"
MISSING_USER_DETAILS = "missing_user_details_permission"


@dataclass(frozen=True)
class TokenUser:
    """The user a token acts for, or why Cloudflare would not say (then `id` and `email` are None)."""

    id: str | None
    email: str | None
    reason: str | None = None


@dataclass
class PermissionReport:
    """Which deploy capabilities the token has on the account, and what is missing by name."""

    granted: dict[str, bool]
    missing: dict[str, str] = field(default_factory=dict)  # probe -> permission name
    plan_blocked: set[str] = field(default_factory=set)  # probes refused because of the plan (10075)
    containers_account: dict | None = None
    #: The account's Workers, as the `workers` probe read them (GET /workers/scripts).
    scripts: list[dict[str, Any]] | None = None

    @property
    def missing_permissions(self) -> list[str]:
        return sorted(set(self.missing.values()))


@dataclass
class AccountPlan:
    type: str  # "enterprise" | "business" | "pro" | "free"
    workers_plan: str  # "paid" | "free" | "unknown"
    subscriptions_readable: bool
    plan_names: list[str] = field(default_factory=list)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def token_problem(info: TokenInfo, now: datetime) -> str | None:
    """Why a verified token cannot be used (None when usable). Pure."""
    if info.status != "active":
        return info.status or "inactive"
    expires = _parse_time(info.expires_on)
    if expires is not None and expires <= now:
        return "expired"
    not_before = _parse_time(info.not_before)
    if not_before is not None and not_before > now:
        return "not yet valid"
    return None


def plan_from_names(account_type: str | None, names: list[str]) -> str:
    """`accountInfo.type` of /deploy/validate: enterprise, else the best plan subscriptions show, else free."""
    if account_type == "enterprise":
        return "enterprise"
    lowered = " ".join(names).lower()
    for plan in ("enterprise", "business", "pro"):
        if plan in lowered:
            return plan
    return "free"


def workers_plan_from_names(names: list[str]) -> str | None:
    lowered = [n.lower() for n in names]
    if any("workers" in n and ("paid" in n or "standard" in n or "bundled" in n or "unbound" in n) for n in lowered):
        return "paid"
    return None


class AccountsAPI(CloudflareTransport):
    """The account calls of CloudflareClient, on its transport (`call`, `get_all`, `is_account_token`)."""

    async def verify_token(self, account_id: str | None = None, *, require_active: bool = True,
                           now: datetime | None = None) -> TokenInfo:
        """Verify the token: user endpoint, or the account endpoint for `cfat_` tokens / code 1000.

        Without `account_id`, an account-owned token is verified on the account GET /accounts
        shows it (its own). Raises AuthenticationError when Cloudflare rejects it, TokenInactive
        when it is not usable.
        """
        result = None
        kind = "user"
        if self.is_account_token and not account_id:
            account_id = await self._owning_account()
        if self.is_account_token and account_id:
            kind = "account"
            result = await self.call("GET", f"/accounts/{account_id}/tokens/verify")
        else:
            try:
                result = await self.call("GET", "/user/tokens/verify")
            except AuthenticationError as exc:
                if not (1000 in exc.codes or self.is_account_token):
                    raise
                account_id = account_id or await self._owning_account()
                if not account_id:
                    raise
                kind = "account"
                result = await self.call("GET", f"/accounts/{account_id}/tokens/verify")
        result = result or {}
        info = TokenInfo(result.get("id"), result.get("status", "unknown"), kind,
                         result.get("expires_on"), result.get("not_before"))
        if require_active:
            problem = token_problem(info, now or datetime.now(UTC))
            if problem:
                raise TokenInactive(problem, expires_on=info.expires_on)
        return info

    async def _owning_account(self) -> str | None:
        """The one account GET /accounts shows the token (an account-owned token's own), else None.

        A token Cloudflare refuses outright also gives None, so the caller raises its own error."""
        try:
            accounts = await self.list_accounts()
        except (AuthenticationError, PermissionDenied, NotFound):
            return None
        ids = [str(a["id"]) for a in accounts if isinstance(a, dict) and a.get("id")]
        return ids[0] if len(ids) == 1 else None

    async def token_user(self) -> TokenUser:
        """GET /user: the token's user, when the token may read it.

        Cloudflare refuses a user token without User Details Read with 9109, which wrangler's
        whoami takes to mean "no email"; account-owned tokens belong to an account, not a user,
        and user endpoints answer them 1000, which wrangler takes to mean "account token" (both in
        https://github.com/cloudflare/workers-sdk, packages/wrangler/src/user/whoami.ts). Other
        failures propagate.
        """
        if self.is_account_token:
            return TokenUser(None, None, ACCOUNT_OWNED_TOKEN)
        try:
            result = await self.call("GET", "/user")
        except PermissionDenied:
            return TokenUser(None, None, MISSING_USER_DETAILS)
        except AuthenticationError as exc:
            if 1000 in exc.codes and not isinstance(exc, TokenInactive):
                return TokenUser(None, None, ACCOUNT_OWNED_TOKEN)
            raise
        user = result if isinstance(result, dict) else {}
        user_id, email = user.get("id"), user.get("email")
        return TokenUser(str(user_id) if user_id else None, str(email) if email else None)

    async def get_account(self, account_id: str) -> dict:
        return await self.call("GET", f"/accounts/{account_id}")

    async def list_accounts(self) -> list[dict]:
        return await self.get_all("/accounts", per_page=50)

    async def get_subscriptions(self, account_id: str) -> list[dict] | None:
        """The account's subscriptions, or None when the token may not read billing."""
        try:
            return await self.call("GET", f"/accounts/{account_id}/subscriptions") or []
        except PermissionDenied:
            return None

    async def containers_account(self, account_id: str) -> dict:
        """GET /containers/me: limits and `external_account_id` (4xx on Free or without the scope)."""
        return await self.call("GET", f"/accounts/{account_id}/containers/me")

    async def _probe(self, account_id: str, name: str) -> tuple[str, bool, str | None, Any]:
        suffix, _permission = PROBES[name]
        try:
            result = await self.call("GET", f"/accounts/{account_id}{suffix}",
                                     params={"per_page": 1} if name == "durableObjects" else None)
            return name, True, None, result
        except QuotaExceeded:
            return name, False, "plan", None
        except PermissionDenied:
            return name, False, "permission", None
        except NotFound as exc:
            if name == "subdomain" and exc.code == 10007:
                return name, True, None, None  # readable: the account simply has no subdomain yet
            if name == "account" or 7003 in exc.codes:
                raise
            return name, False, "permission", None

    async def probe_permissions(self, account_id: str, probes: tuple[str, ...] = tuple(PROBES)) -> PermissionReport:
        """Run the cheap read probes concurrently; 403/10000 becomes a named missing permission.

        AuthenticationError (bad token) and NotFound 7003 (bad account id) propagate.
        """
        results = await asyncio.gather(*(self._probe(account_id, p) for p in probes))
        report = PermissionReport(granted={})
        for name, ok, reason, result in results:
            report.granted[name] = ok
            if reason == "permission":
                report.missing[name] = PROBES[name][1]
            elif reason == "plan":
                report.plan_blocked.add(name)
            if name == "containers" and ok:
                report.containers_account = result
            if name == "workers" and ok:
                report.scripts = list(result or [])
        return report

    async def account_plan(self, account_id: str, *, account: dict | None = None,
                           containers_ok: bool | None = None) -> AccountPlan:
        """Account type and Workers plan from the signals available (the account, its subscriptions and whether the Containers API answers)."""
        account = account if account is not None else await self.get_account(account_id)
        subscriptions = await self.get_subscriptions(account_id)
        names = []
        for sub in subscriptions or []:
            rate_plan = sub.get("rate_plan") or {}
            for key in ("public_name", "id"):
                if rate_plan.get(key):
                    names.append(str(rate_plan[key]))
        workers_plan = workers_plan_from_names(names)
        if workers_plan is None:
            if containers_ok is None:
                try:
                    await self.containers_account(account_id)
                    containers_ok = True
                except QuotaExceeded:
                    containers_ok = False
                except CloudflareAPIError:
                    containers_ok = None
            workers_plan = {True: "paid", False: "free", None: "unknown"}[containers_ok]
        return AccountPlan(
            type=plan_from_names(account.get("type"), names),
            workers_plan=workers_plan,
            subscriptions_readable=subscriptions is not None,
            plan_names=names,
        )
