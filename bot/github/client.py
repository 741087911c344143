"""gidgethub's aiohttp client with GitHub's etiquette built in: rate-limit waits, retries, pacing.

One `FlareshipGitHubAPI` per installation (or for the App itself), all on one shared aiohttp
session. It uses gidgethub 6.0.0's two hooks: `manage_rate_limit` runs before every attempt and
paces writes; `handle_rate_limit_error` runs on every HTTP error and decides whether to wait and
retry. The authorization header is filled in per attempt from a provider, so a long-lived client
always sends a fresh installation token or App JWT.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import gidgethub.aiohttp
from gidgethub import BadRequest, GitHubBroken, HTTPException, RateLimitExceeded, sansio

from bot.errors import FlareshipError
from bot.github.paths import path_template

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
USER_AGENT = "Flareship"
MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: Returns the full `Authorization` header value ("token ghs_...", "bearer eyJ...").
AuthProvider = Callable[[], Awaitable[str]]


class RequestStats:
    """Requests made, counted per (method, path template, status); shared by all clients of an App."""

    def __init__(self) -> None:
        self.counter: Counter[tuple[str, str, int]] = Counter()
        #: Latest `x-ratelimit-remaining` / `x-ratelimit-limit` seen, per scope ("app", "installation:ID").
        self.rate_limits: dict[str, tuple[int, int]] = {}

    def record(self, method: str, template: str, status: int) -> None:
        self.counter[(method, template, status)] += 1

    def count(self, method: str | None = None, template: str | None = None, status: int | None = None) -> int:
        return sum(
            n
            for (m, t, s), n in self.counter.items()
            if (method is None or m == method) and (template is None or t == template) and (status is None or s == status)
        )

    @property
    def writes(self) -> int:
        return sum(n for (m, _, _), n in self.counter.items() if m in MUTATING)

    def record_rate_limit(self, scope: str, headers: Mapping[str, str]) -> None:
        limit = sansio.RateLimit.from_http(headers)  # None when the answer carries no rate-limit headers
        if limit is not None:
            self.rate_limits[scope] = (limit.remaining, limit.limit)

    def reset(self) -> None:
        self.counter.clear()
        self.rate_limits.clear()


class WritePacer:
    """Spaces mutating requests of one installation at least `interval` seconds apart.

    GitHub asks integrations to make writes serially with about a second between them; the
    lock orders writers and each waits out the gap since the previous write started.
    """

    def __init__(self, interval: float, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None

    async def wait_turn(self) -> None:
        if self.interval <= 0:
            return
        async with self._lock:
            if self._last is not None:
                gap = self._last + self.interval - self._clock()
                if gap > 0:
                    await self._sleep(gap)
            self._last = self._clock()


class RetryPolicy:
    """How long and how often a client waits on rate limits and retries GitHub's 5xx answers."""

    def __init__(
        self,
        *,
        max_rate_limit_attempts: int = 3,
        max_wait: float = 60.0,
        secondary_default_wait: float = 60.0,
        max_server_error_attempts: int = 3,
        backoff: float = 0.5,
    ):
        self.max_rate_limit_attempts = max_rate_limit_attempts
        self.max_wait = max_wait
        self.secondary_default_wait = secondary_default_wait
        self.max_server_error_attempts = max_server_error_attempts
        self.backoff = backoff


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def rate_limit_wait(exc: HTTPException, *, attempt: int, now: float, policy: RetryPolicy) -> float | None:
    """Seconds to wait before retrying a rate-limited request, or None when it is not one.

    Pure: follows GitHub's rules (docs rest/using-the-rest-api/rate-limits-for-the-rest-api):
    `retry-after` first; else `x-ratelimit-remaining: 0` means wait until `x-ratelimit-reset`;
    else a secondary limit without either header waits a minute, doubling on repeats.
    """
    status = int(exc.status_code)
    headers = getattr(exc, "headers", None)
    if status not in (403, 429):
        return None
    retry_after = retry_after_seconds(_header(headers, "retry-after"), now)
    if retry_after is not None:
        return retry_after
    remaining = _header(headers, "x-ratelimit-remaining")
    reset = _header(headers, "x-ratelimit-reset")
    if isinstance(exc, RateLimitExceeded):
        return max(0.0, exc.rate_limit.reset_datetime.timestamp() - now) + 1.0
    if remaining == "0" and reset is not None:
        return max(0.0, float(reset) - now) + 1.0
    message = " ".join(str(a) for a in exc.args).lower()
    if status == 429 or "secondary rate limit" in message or "abuse" in message:
        return policy.secondary_default_wait * (2 ** (attempt - 1))
    return None  # a plain 403: permission denied, not a limit


class FlareshipGitHubAPI(gidgethub.aiohttp.GitHubAPI):
    """An installation (or App) client: fresh auth per attempt, rate-limit hooks, write pacing."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        auth: AuthProvider | None = None,
        cache: Any = None,
        pacer: WritePacer | None = None,
        stats: RequestStats | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock = time.time,
        sleep: Sleep | None = None,
        on_unauthorized: Callable[[], None] | None = None,
        installation_id: int | None = None,
        requester: str = USER_AGENT,
    ):
        super().__init__(session, requester, cache=cache, base_url=base_url.rstrip("/"))
        self.installation_id = installation_id
        self._auth = auth
        self._pacer = pacer
        self.stats = stats if stats is not None else RequestStats()
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._sleep = sleep or asyncio.sleep
        self._on_unauthorized = on_unauthorized

    # -- transport ---------------------------------------------------------------------

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        request_headers = dict(headers)
        request_headers["x-github-api-version"] = API_VERSION
        if self._auth is not None and "authorization" not in headers:
            # Filled per attempt so retries after a token refresh carry the new token.
            request_headers["authorization"] = await self._auth()
        template = path_template(url, self.base_url)
        try:
            status, response_headers, data = await super()._request(method, url, request_headers, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.stats.record(method, template, 0)
            if method in IDEMPOTENT:
                # Answer like a gateway error so the same bounded retry covers a dropped connection.
                log.warning("GitHub unreachable on %s %s: %s", method, template, type(exc).__name__)
                return 502, {"content-type": "application/json"}, b'{"message": "connection failed"}'
            raise FlareshipError("SYS_002", f"GitHub could not be reached ({type(exc).__name__})") from exc
        self.stats.record(method, template, status)
        scope = f"installation:{self.installation_id}" if self.installation_id is not None else "app"
        self.stats.record_rate_limit(scope, response_headers)
        return status, response_headers, data

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    # -- gidgethub 6.0.0 hooks -----------------------------------------------------------

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        """Before each attempt: wait out an exhausted primary limit, then pace writes."""
        limit = self.rate_limit
        if limit is not None and limit.remaining < 0:
            wait = limit.reset_datetime.timestamp() - self._clock()
            if wait > 0:
                if wait > self.policy.max_wait:
                    raise FlareshipError(
                        "SYS_003", f"GitHub rate limit exhausted for {wait:.0f}s", retry_after=wait
                    )
                log.warning("GitHub primary rate limit exhausted; waiting %.1fs", wait)
                await self.sleep(wait)
            self.rate_limit = None
        if method in MUTATING and self._pacer is not None:
            await self._pacer.wait_turn()

    async def handle_rate_limit_error(self, *, method: str, url: str, exception: HTTPException, attempt: int) -> bool:
        status = int(exception.status_code)
        if status == 401 and self._on_unauthorized is not None and attempt == 1:
            # The token was revoked or expired early: forget it and retry once with a new one.
            self._on_unauthorized()
            return True
        if isinstance(exception, GitHubBroken) and status in RETRYABLE_STATUSES:
            if method not in IDEMPOTENT or attempt >= self.policy.max_server_error_attempts:
                return False
            wait = self.policy.backoff * (2 ** (attempt - 1))
            log.warning("GitHub answered %s to %s %s; retry %d in %.2fs", status, method,
                        path_template(url, self.base_url), attempt, wait)
            await self.sleep(wait)
            return True
        if not isinstance(exception, BadRequest):
            return False
        wait = rate_limit_wait(exception, attempt=attempt, now=self._clock(), policy=self.policy)
        if wait is None:
            return False
        if wait > self.policy.max_wait or attempt >= self.policy.max_rate_limit_attempts:
            raise FlareshipError(
                "SYS_003",
                f"GitHub rate limit on {method} {path_template(url, self.base_url)}; retry in {wait:.0f}s",
                retry_after=wait,
            ) from exception
        log.warning("GitHub rate limit (%s) on %s %s; waiting %.1fs", status, method,
                    path_template(url, self.base_url), wait)
        await self.sleep(wait)
        return True

    # -- raw downloads -------------------------------------------------------------------

    async def get_bytes(self, url: str, url_vars: Mapping[str, Any] | None = None, *,
                        accept: str = "application/vnd.github.raw", max_bytes: int | None = None) -> bytes:
        """GET a binary body (tarball, raw file) with the same hooks; redirects are followed.

        gidgethub decodes every body as text, so binary answers take this path instead.
        """
        filled = sansio.format_url(url, url_vars or {}, base_url=self.base_url)
        headers = sansio.create_headers(self.requester, accept=accept)
        headers["content-length"] = "0"
        attempt = 0
        while True:
            attempt += 1
            self.requests_in_flight += 1
            try:
                await self.manage_rate_limit(method="GET", url=filled)
                status, response_headers, body = await self._request("GET", filled, headers, b"")
            finally:
                self.requests_in_flight -= 1
            if 200 <= status < 300:
                limit = sansio.RateLimit.from_http(response_headers)
                if limit is not None:
                    self.rate_limit = limit
                if max_bytes is not None and len(body) > max_bytes:
                    raise FlareshipError("DEPLOY_001", f"download is larger than {max_bytes} bytes")
                return body
            content_type = response_headers.get("content-type", "")
            error_body = body if content_type.startswith("application/json") else b""
            try:
                sansio.decipher_response(status, response_headers, error_body)
                raise HTTPException(_status(status))
            except HTTPException as exc:
                if not await self.handle_rate_limit_error(method="GET", url=filled, exception=exc, attempt=attempt):
                    raise


def _status(code: int) -> http.HTTPStatus:
    return http.HTTPStatus(code)
