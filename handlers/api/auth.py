"""AuthController: GitHub installation tokens, Cloudflare token checks, API-token rotation and permissions."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import gidgethub
from aiohttp import web

from bot.api_auth import ACTIONS, ScopeError, allows
from bot.cloudflare.errors import CloudflareError
from bot.engine.config import CONFIG_PATH, parse_repo_config
from bot.engine.failures import catalogue_error
from bot.errors import FlareshipError
from bot.github.app import GitHubApp
from bot.github.contents import read_file
from bot.logs import register_secret
from bot.policy import Actor, EnvironmentRules, has_permission
from bot.services import SERVICES
from bot.store.api_tokens import token_json
from handlers.api import models
from handlers.api.bodies import parse_body
from handlers.api.deployments import engine_of
from handlers.api.present import iso
from handlers.api.security import authorize, caller, token_store
from handlers.http import json_success

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger(__name__)

_LEVELS = {"read": 1, "write": 2, "admin": 3}


def wider_permissions(requested: dict[str, str], installation: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Requested permissions the installation does not have at that level (pure)."""
    wider = {}
    for name, level in requested.items():
        have = installation.get(name)
        if have is None or _LEVELS.get(level, 99) > _LEVELS.get(have, 0):
            wider[name] = {"requested": level, "installation": have}
    return wider


def _github(request: web.Request) -> GitHubApp:
    github = request.app[SERVICES].github
    if not isinstance(github, GitHubApp):
        raise FlareshipError("SYS_002", "The GitHub App is not configured on this server")
    return github


def _github_error(exc: gidgethub.HTTPException, what: str) -> FlareshipError:
    status = int(exc.status_code)
    if status == 404:
        return FlareshipError("SYS_005", f"{what} not found on GitHub")
    if status in (401,):
        return FlareshipError("AUTH_001")
    if status == 403:
        return FlareshipError("AUTH_002", f"GitHub refused access to {what}")
    if status == 422:
        return FlareshipError("SYS_006", f"GitHub rejected the request: {exc}", variant="unprocessable")
    return FlareshipError("SYS_002", f"GitHub answered {status}")


async def generate_github_token(request: web.Request) -> web.Response:
    """POST /auth/github-app/token (admin): an installation token, at most as wide as the installation."""
    body = await parse_body(request, models.GitHubTokenRequest)
    github = _github(request)
    installation_id = int(body.installationId)
    requested = body.permissions.as_dict() if body.permissions else {}
    try:
        granted = await github.installation_permissions(installation_id)
    except gidgethub.HTTPException as exc:
        raise _github_error(exc, f"installation {installation_id}") from None
    except (aiohttp.ClientError, TimeoutError):
        raise FlareshipError("SYS_002", "GitHub is unreachable") from None
    wider = wider_permissions(requested, granted)
    if wider:
        names = ", ".join(f"{k}:{v['requested']} (installation has {v['installation'] or 'none'})" for k, v in wider.items())
        raise FlareshipError(
            "AUTH_006",
            f"Requested permissions are wider than the installation's: {names}",
            details={"permissions": wider},
        )
    try:
        token = await github.installation_token(
            installation_id, permissions=requested or None, repositories=body.repositories
        )
    except gidgethub.HTTPException as exc:
        raise _github_error(exc, f"installation {installation_id}") from None
    register_secret(token.token)
    log.info("minted an installation token for installation %s (%s)", installation_id, caller(request).id)
    return json_success({"token": token.token, "expiresAt": iso(token.expires_at), "permissions": dict(token.permissions)})


async def verify_cloudflare_token(request: web.Request) -> web.Response:
    """POST /auth/cloudflare/verify: is this Cloudflare token valid, with which scopes and accounts?"""
    token = caller(request)
    if not ("admin" in token.scopes or any(s.startswith("deploy:") for s in token.scopes)):
        raise FlareshipError("AUTH_006", "Verifying Cloudflare tokens needs a deploy:<env> or admin scope",
                             details={"requiredScope": "deploy:<env>"})
    body = await parse_body(request, models.CloudflareVerifyRequest)
    register_secret(body.apiToken)
    engine = engine_of(request)
    result = await engine.verify_token(body.apiToken, body.requiredScopes)
    result["user"] = await _token_user(engine, body.apiToken)
    return json_success(models.CloudflareVerifyResponse.model_validate(result).model_dump(mode="json"))


async def _token_user(engine: Engine, api_token: str) -> dict[str, str | None]:
    """The `user` of a verified token: who it acts for, or null fields and the reason."""
    try:
        user = await engine.cloudflare.for_token(api_token).token_user()
    except CloudflareError as exc:
        raise catalogue_error(exc) from None
    return {"id": user.id, "email": user.email, "reason": user.reason}


async def refresh_tokens(request: web.Request) -> web.Response:
    """POST /auth/tokens/refresh: rotate the caller's API token (new value, old one revoked)."""
    body = await parse_body(request, models.RefreshTokensRequest, optional=True)
    old = caller(request)
    expires = timedelta(days=body.expiresInDays) if body.expiresInDays else None
    new, plaintext = await token_store(request.app).rotate(old, expires_in=expires)
    return json_success({"token": plaintext, "apiToken": token_json(new), "revokedId": old.id})


async def _github_permission(request: web.Request, repository: str, user: str, environment: str,
                             required_override: str | None) -> dict[str, Any]:
    """Does `user`'s role on `repository` meet `environment`'s rule in the repository's policy
    (`.github/flareship.yml` on the default branch; the built-in defaults when it has none)?"""
    github = _github(request)
    try:
        installation = await github.app_client().getitem(f"/repos/{repository}/installation")
        gh = await github.client(int(installation["id"]))
        default_branch = (await gh.getitem(f"/repos/{repository}"))["default_branch"]
        raw = await read_file(gh, repository, CONFIG_PATH, default_branch)
        try:
            data = await gh.getitem(f"/repos/{repository}/collaborators/{user}/permission")
            actor = Actor(user, data.get("role_name"), data.get("permission"))
        except gidgethub.BadRequest as exc:
            if int(exc.status_code) not in (403, 404):
                raise
            actor = Actor(user, None, None)
    except gidgethub.HTTPException as exc:
        raise _github_error(exc, f"{user} on {repository}") from None
    except (aiohttp.ClientError, TimeoutError):
        raise FlareshipError("SYS_002", "GitHub is unreachable") from None
    source = "default"
    env_config: dict[str, Any] | object = {}
    if raw is not None:
        config = parse_repo_config(raw.decode("utf-8", "replace"))
        if environment in config.environments:
            env_config, source = config.environments[environment], "config"
    rules = EnvironmentRules.from_config(environment, env_config)
    if required_override is not None:
        rules = replace(rules, required_permission=required_override)
    return {
        "user": user,
        "repository": repository,
        "permission": actor.role or "none",
        "required": rules.required_permission,
        "allowed": has_permission(actor, rules, "deploy"),
        "source": source,
    }


async def validate_permissions(request: web.Request) -> web.Response:
    """POST /auth/permissions/validate: what the caller's token may do on an environment, and
    optionally whether a GitHub user may deploy there under the repository's policy."""
    body = await parse_body(request, models.ValidatePermissionsRequest)
    token = caller(request)
    allowed = {action: allows(token.scopes, action, body.environment) for action in ACTIONS}
    result: dict[str, Any] = {"environment": body.environment, "scopes": list(token.scopes), "allowed": allowed, "github": None}
    if body.githubUser or body.repository:
        if not (body.githubUser and body.repository):
            raise FlareshipError("SYS_006", "githubUser and repository go together", variant="unprocessable",
                                 details={"field": "githubUser" if not body.githubUser else "repository",
                                          "reason": "required with the other"})
        authorize(request, "read")
        result["github"] = await _github_permission(
            request, body.repository, body.githubUser, body.environment, body.requiredPermission)
    return json_success(result)


# -- token management (admin) ---------------------------------------------------------------------


async def list_api_tokens(request: web.Request) -> web.Response:
    """GET /auth/tokens (admin): every API token, without values."""
    authorize(request, "admin")
    tokens = await token_store(request.app).list()
    return json_success({"tokens": [token_json(t) for t in tokens]})


async def create_api_token(request: web.Request) -> web.Response:
    """POST /auth/tokens (admin): a new API token, shown once."""
    body = await parse_body(request, models.CreateTokenRequest)
    try:
        record, plaintext = await token_store(request.app).create(
            name=body.name, scopes=body.scopes,
            expires_in=timedelta(days=body.expiresInDays) if body.expiresInDays else None,
        )
    except ScopeError as exc:
        raise FlareshipError("SYS_006", str(exc), variant="unprocessable", details={"field": "scopes", "reason": str(exc)}) from None
    return json_success({"token": plaintext, "apiToken": token_json(record)}, status=201)


async def revoke_api_token(request: web.Request) -> web.Response:
    """DELETE /auth/tokens/{tokenId} (admin): revoke a token."""
    token_id = request.match_info["tokenId"]
    store = token_store(request.app)
    existing = await store.get(token_id)
    if existing is None:
        raise FlareshipError("SYS_005", f"No API token {token_id}")
    await store.revoke(token_id)
    revoked = await store.get(token_id)
    if revoked is None:  # deleted meanwhile by another admin
        raise FlareshipError("SYS_005", f"No API token {token_id}")
    return json_success({"apiToken": token_json(revoked)})
