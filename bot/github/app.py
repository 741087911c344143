"""The GitHub App's identity: its JWT, its installation tokens, and clients built on them.

Installation tokens are the App's most used secret and its scarcest resource: each mint is a
request, and a burst of webhooks for one installation must not mint one token each. Tokens are
cached per (installation, permissions, repositories) until shortly before they expire, and
concurrent callers for the same key share a single mint.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt as pyjwt
from cachetools import LRUCache
from cryptography.hazmat.primitives import serialization
from gidgethub import BadRequest, HTTPException

from bot.errors import FlareshipError
from bot.github.client import (
    Clock,
    FlareshipGitHubAPI,
    RequestStats,
    RetryPolicy,
    Sleep,
    WritePacer,
)
from bot.logs import register_secret

log = logging.getLogger(__name__)

#: gidgethub.apps.get_jwt backdates `iat` by 60 s for clock drift; GitHub refuses `exp` more
#: than 10 minutes ahead, so exp = iat + 10 min lands 9 minutes from now.
JWT_BACKDATE = 60
JWT_LIFETIME = 600
#: A JWT is renewed when it has less than this left, so no request carries one about to lapse.
JWT_RENEW_BEFORE = 120
#: Installation tokens live an hour; stop using one this long before `expires_at`.
TOKEN_REFRESH_MARGIN = 300
ETAG_CACHE_SIZE = 500

TokenKey = tuple[int, frozenset[tuple[str, str]] | None, tuple[str, ...] | None]


@dataclass(frozen=True)
class InstallationToken:
    token: str = field(repr=False)
    expires_at: datetime
    permissions: dict[str, str]
    repository_selection: str | None = None
    repositories: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return (f"InstallationToken(token=***, expires_at={self.expires_at.isoformat()}, "
                f"permissions={self.permissions!r}, repository_selection={self.repository_selection!r})")


@functools.lru_cache(maxsize=8)
def load_private_key(pem: str) -> Any:
    """Parse the PEM once: cryptography validates an RSA key on every load, which costs ~70 ms."""
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise FlareshipError("AUTH_001", "the GitHub App private key does not parse as a PEM key") from exc


def make_jwt(app_id: str, private_key: Any, now: float) -> tuple[str, float]:
    """An App JWT the way gidgethub.apps.get_jwt builds it, with the clock passed in; returns (jwt, exp)."""
    issued_at = int(now) - JWT_BACKDATE
    expires = issued_at + JWT_LIFETIME
    token = pyjwt.encode({"iat": issued_at, "exp": expires, "iss": str(app_id)}, private_key, algorithm="RS256")
    return token, float(expires)


def token_key(installation_id: int, permissions: dict[str, str] | None, repositories: list[str] | None) -> TokenKey:
    return (
        int(installation_id),
        frozenset(permissions.items()) if permissions else None,
        tuple(sorted(repositories)) if repositories else None,
    )


def parse_expires_at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _repo_name(repository: str) -> str:
    """The access-token API takes repository names without the owner."""
    return repository.split("/", 1)[1] if "/" in repository else repository


class GitHubApp:
    """The App: mints JWTs and installation tokens, hands out paced, cached clients."""

    #: Whether this server acts as a GitHub App (GitHubUnavailable: it does not).
    configured = True

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        app_id: str,
        private_key: str,
        base_url: str,
        write_interval: float = 1.0,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
        policy: RetryPolicy | None = None,
        token_refresh_margin: float = TOKEN_REFRESH_MARGIN,
        cache_size: int = ETAG_CACHE_SIZE,
    ):
        self.session = session
        self.app_id = str(app_id)
        self._private_key = load_private_key(private_key)
        self.base_url = base_url.rstrip("/")
        self.write_interval = write_interval
        self.clock = clock
        self.sleep = sleep or asyncio.sleep
        self.policy = policy or RetryPolicy()
        self.token_refresh_margin = token_refresh_margin
        self.cache_size = cache_size
        self.stats = RequestStats()
        register_secret(private_key, pinned=True)
        self._jwt: tuple[str, float] | None = None
        self._tokens: dict[TokenKey, InstallationToken] = {}
        self._minting: dict[TokenKey, asyncio.Task[InstallationToken]] = {}
        self._caches: dict[int, LRUCache] = {}
        self._pacers: dict[int, WritePacer] = {}
        self._app_client: FlareshipGitHubAPI | None = None

    @classmethod
    def from_settings(cls, session: aiohttp.ClientSession, settings: Any) -> GitHubApp:
        private_key = settings.private_key_pem()
        if not settings.github_app_id or not private_key:
            raise FlareshipError("AUTH_001", "GITHUB_APP_ID and the private key are both needed")
        return cls(
            session,
            app_id=settings.github_app_id.strip(),
            private_key=private_key,
            base_url=settings.github_api_url,
            write_interval=getattr(settings, "github_write_interval", 1.0),
        )

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.app_id!r}, base_url={self.base_url!r})"

    # -- App JWT -----------------------------------------------------------------------

    def jwt(self) -> str:
        """The App's JWT, reused until it has less than JWT_RENEW_BEFORE seconds left."""
        now = self.clock()
        if self._jwt is None or now >= self._jwt[1] - JWT_RENEW_BEFORE:
            self._jwt = make_jwt(self.app_id, self._private_key, now)
            register_secret(self._jwt[0])
        return self._jwt[0]

    async def _jwt_header(self) -> str:
        return f"bearer {self.jwt()}"

    def app_client(self) -> FlareshipGitHubAPI:
        """A client authenticated as the App itself (JWT), for /app/... calls."""
        if self._app_client is None:
            self._app_client = FlareshipGitHubAPI(
                self.session,
                base_url=self.base_url,
                auth=self._jwt_header,
                cache=LRUCache(maxsize=self.cache_size),
                stats=self.stats,
                policy=self.policy,
                clock=self.clock,
                sleep=self.sleep,
            )
        return self._app_client

    # -- installation tokens -----------------------------------------------------------

    async def installation_token(
        self,
        installation_id: int,
        *,
        permissions: dict[str, str] | None = None,
        repositories: list[str] | None = None,
    ) -> InstallationToken:
        """A token for the installation, narrowed when permissions/repositories are given."""
        key = token_key(installation_id, permissions, repositories)
        cached = self._tokens.get(key)
        if cached is not None and self.clock() < cached.expires_at.timestamp() - self.token_refresh_margin:
            return cached
        task = self._minting.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._mint(key, int(installation_id), permissions, repositories)
            )
            self._minting[key] = task
            task.add_done_callback(functools.partial(self._forget_mint, key))
        # shield: one caller giving up must not cancel the mint the others are waiting for.
        return await asyncio.shield(task)

    def invalidate_token(self, installation_id: int, permissions: dict[str, str] | None = None,
                         repositories: list[str] | None = None) -> None:
        self._tokens.pop(token_key(installation_id, permissions, repositories), None)

    def _forget_mint(self, key: TokenKey, _task: asyncio.Task[InstallationToken]) -> None:
        """Drop a finished mint so the next request for that key starts afresh."""
        self._minting.pop(key, None)

    async def _mint(self, key: TokenKey, installation_id: int, permissions: dict[str, str] | None,
                    repositories: list[str] | None) -> InstallationToken:
        body: dict[str, Any] = {}
        if repositories:
            body["repositories"] = sorted({_repo_name(r) for r in repositories})
        if permissions:
            body["permissions"] = dict(permissions)
        gh = self.app_client()
        try:
            data = await gh.post(
                "/app/installations/{installation_id}/access_tokens",
                {"installation_id": installation_id},
                data=body if body else b"",
            )
        except HTTPException as exc:
            raise _auth_error(exc, f"minting a token for installation {installation_id}") from exc
        token = InstallationToken(
            token=data["token"],
            expires_at=parse_expires_at(data["expires_at"]),
            permissions=dict(data.get("permissions") or {}),
            repository_selection=data.get("repository_selection"),
            repositories=tuple(r["full_name"] for r in data["repositories"]) if data.get("repositories") else None,
        )
        register_secret(token.token)
        now = self.clock()
        for stale in [k for k, t in self._tokens.items() if t.expires_at.timestamp() <= now]:
            del self._tokens[stale]  # narrowed tokens asked for once must not pile up
        self._tokens[key] = token
        log.info("minted an installation token for installation %s (expires %s)",
                 installation_id, token.expires_at.isoformat())
        return token

    async def installation_permissions(self, installation_id: int) -> dict[str, str]:
        """What the installation was granted (GET /app/installations/{id}); for narrowing checks."""
        try:
            data = await self.app_client().getitem(
                "/app/installations/{installation_id}", {"installation_id": int(installation_id)}
            )
        except HTTPException as exc:
            raise _auth_error(exc, f"reading installation {installation_id}") from exc
        return dict(data.get("permissions") or {})

    # -- installation clients ----------------------------------------------------------

    def _pacer(self, installation_id: int) -> WritePacer:
        pacer = self._pacers.get(installation_id)
        if pacer is None:
            pacer = self._pacers[installation_id] = WritePacer(self.write_interval, sleep=self.sleep)
        return pacer

    def _cache(self, installation_id: int) -> LRUCache:
        # gidgethub keys its ETag cache by URL only, so each installation keeps its own.
        cache = self._caches.get(installation_id)
        if cache is None:
            cache = self._caches[installation_id] = LRUCache(maxsize=self.cache_size)
        return cache

    async def client(self, installation_id: int) -> FlareshipGitHubAPI:
        """A client acting as the installation; its token is minted now and renewed as needed."""
        installation_id = int(installation_id)
        await self.installation_token(installation_id)

        async def auth() -> str:
            return f"token {(await self.installation_token(installation_id)).token}"

        return FlareshipGitHubAPI(
            self.session,
            base_url=self.base_url,
            auth=auth,
            cache=self._cache(installation_id),
            pacer=self._pacer(installation_id),
            stats=self.stats,
            policy=self.policy,
            clock=self.clock,
            sleep=self.sleep,
            on_unauthorized=lambda: self.invalidate_token(installation_id),
            installation_id=installation_id,
        )

    def client_for_token(self, token: str, *, installation_id: int | None = None) -> FlareshipGitHubAPI:
        """A client for a token minted elsewhere (e.g. a narrowed one); never renewed."""
        register_secret(token)

        async def auth() -> str:
            return f"token {token}"

        return FlareshipGitHubAPI(
            self.session, base_url=self.base_url, auth=auth,
            cache=self._cache(installation_id) if installation_id is not None else None,
            pacer=self._pacer(installation_id) if installation_id is not None else None,
            stats=self.stats, policy=self.policy, clock=self.clock, sleep=self.sleep,
            installation_id=installation_id,
        )


class GitHubUnavailable:
    """Where GITHUB_APP_ID or the private key is not set (an API-only server): every use of
    GitHub answers SYS_002, so no part has to hold a None in its place."""

    configured = False

    async def client(self, installation_id: int, /) -> FlareshipGitHubAPI:
        raise FlareshipError("SYS_002", "GitHub is not configured")

    def __repr__(self) -> str:
        return "GitHubUnavailable()"


def github_from_settings(session: aiohttp.ClientSession, settings: Any) -> GitHubApp | GitHubUnavailable:
    """The App when its id and private key are both set, else GitHubUnavailable."""
    if settings.github_app_id and (settings.github_private_key or settings.github_private_key_path):
        return GitHubApp.from_settings(session, settings)
    return GitHubUnavailable()


def _auth_error(exc: HTTPException, doing: str) -> Exception:
    """GitHub's answer to an App-authenticated call, in the catalogue's terms."""
    status = int(exc.status_code)
    detail = " ".join(str(a) for a in exc.args) or str(status)
    if status == 401:
        return FlareshipError("AUTH_001", f"GitHub rejected the App's JWT while {doing}: {detail}",
                              details={"githubStatus": status})
    if status in (403, 404, 422) and isinstance(exc, BadRequest):
        return FlareshipError("AUTH_002", f"GitHub denied access while {doing}: {detail}",
                              details={"githubStatus": status})
    return exc

