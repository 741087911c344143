"""The HTTP core of the Cloudflare client: envelope parsing, the request budget and safe retries.

Only requests that are safe to repeat are retried (GET/HEAD, PUT of identical content, and POSTs
the caller marks idempotent) - plus any request refused with 429, which Cloudflare did not carry
out; a POST that creates something is otherwise sent once, and the operation
modules look for the object before creating it, or re-read state after an ambiguous failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.cloudflare.budget import RequestBudget
from bot.cloudflare.errors import (
    CloudflareAPIError,
    CloudflareError,
    CloudflareTimeout,
    RateLimited,
    ServerError,
    TransportError,
    UnexpectedResponse,
    classify,
)
from bot.logs import register_secret

log = logging.getLogger("flareship.cloudflare")

#: wrangler gives up when Cloudflare asks to wait longer than this (seconds).
MAX_RETRY_AFTER = 60.0
SAFE_METHODS = {"GET", "HEAD", "PUT", "DELETE"}


@dataclass
class CloudflareResponse:
    """A successful envelope, unpacked."""

    status: int
    result: Any
    result_info: dict | None = None
    messages: list = field(default_factory=list)
    headers: httpx.Headers | None = None


def parse_envelope(status: int, body: bytes, *, method: str = "", path: str = "",
                   retry_after: float | None = None) -> CloudflareResponse:
    """Turn a Cloudflare answer into a response or raise its typed error (pure; no I/O).

    Understands `{success, errors, messages, result}` and the older `{code, error}` shape.
    """
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if status == 429:
            raise RateLimited(429, None, method=method, path=path, retry_after=retry_after)
        if 200 <= status < 300 and data is None and not body:
            return CloudflareResponse(status, None)
        if status >= 500:
            raise ServerError(status, [{"code": None, "message": f"HTTP {status}"}], method=method, path=path)
        raise UnexpectedResponse(status, body.decode("utf-8", "replace"), method=method, path=path)
    if "success" not in data and "code" in data and "error" in data:
        errors = [{"code": data.get("code"), "message": data.get("error")}]
        raise classify(status if status >= 400 else 400, errors, method=method, path=path, retry_after=retry_after)
    errors = data.get("errors") or []
    if data.get("success") is False or status >= 400:
        if not errors:
            errors = [{"code": None, "message": f"HTTP {status}"}]
        raise classify(status if status >= 400 else 400, errors, method=method, path=path, retry_after=retry_after)
    return CloudflareResponse(status, data.get("result"), data.get("result_info"), data.get("messages") or [])


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class CloudflareTransport:
    """Sends requests for one token; every operation module builds on `request`/`call`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_token: str,
        budget: RequestBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_attempts: int = 3,
        backoff_base: float = 0.5,
        jitter: float = 1.0,
        default_429_pause: float = 5.0,
        rng: random.Random | None = None,
    ):
        if not api_token:
            raise ValueError("a Cloudflare API token is required")
        register_secret(api_token)
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.__token = api_token
        self.budget = budget or RequestBudget(sleep=sleep)
        self._sleep = sleep
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.jitter = jitter
        self.default_429_pause = default_429_pause
        self._rng = rng or random.Random()
        #: (method, path) -> requests sent, for tests and metrics.
        self.stats: Counter[tuple[str, str]] = Counter()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_token=***)"

    @property
    def is_account_token(self) -> bool:
        return self.__token.startswith("cfat_")

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.__token}", "Accept": "application/json"}
        if extra:
            headers.update(extra)
        return headers

    def _backoff(self, attempt: int) -> float:
        return self.backoff_base * (2 ** (attempt - 1)) + self._rng.uniform(0, self.jitter)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        files: list | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> CloudflareResponse:
        """Send one API call (with retries when safe) and return the unpacked envelope."""
        method = method.upper()
        safe = idempotent if idempotent is not None else method in SAFE_METHODS
        url = self.base_url + path
        attempt = 0
        while True:
            attempt += 1
            await self.budget.acquire()
            self.stats[(method, path)] += 1
            try:
                response = await self._http.request(
                    method, url, params=params, json=json_body, files=files, headers=self._headers(headers)
                )
                body = response.content
                retry_after = _retry_after(response.headers)
                if response.status_code == 429:
                    self.budget.pause(retry_after if retry_after is not None else self.default_429_pause)
                parsed = parse_envelope(response.status_code, body, method=method, path=path, retry_after=retry_after)
                parsed.headers = response.headers
                log.debug("cloudflare %s %s -> %s", method, path, response.status_code)
                return parsed
            except httpx.TimeoutException as exc:
                error: CloudflareError = CloudflareTimeout(f"timeout ({type(exc).__name__})", method=method, path=path)
            except httpx.TransportError as exc:
                error = TransportError(f"connection failed ({type(exc).__name__})", method=method, path=path)
            except RateLimited as exc:
                error = exc
            except ServerError as exc:
                error = exc
            except UnexpectedResponse as exc:
                if exc.status < 500:
                    raise
                error = exc
            except CloudflareAPIError:
                raise
            delay = self._retry_delay(error, attempt)
            # A 429 is refused before any work is done, so even a creating POST may be resent.
            repeatable = safe or isinstance(error, RateLimited)
            if not repeatable or attempt >= self.max_attempts or delay is None:
                log.info("cloudflare %s %s failed for good after %d attempt(s): %s", method, path, attempt, error)
                raise error
            log.info("cloudflare %s %s attempt %d failed (%s); retrying in %.2fs", method, path, attempt, error, delay)
            await self._sleep(delay)

    def _retry_delay(self, error: CloudflareError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when retrying is pointless."""
        if isinstance(error, RateLimited):
            if error.retry_after is not None and error.retry_after > MAX_RETRY_AFTER:
                return None
            base = error.retry_after if error.retry_after is not None else 1.0
            # The budget already holds every request until the pause ends; add jitter + 1 s per attempt.
            return max(base, 1.0) + self._rng.uniform(0, self.jitter) + (attempt - 1)
        return self._backoff(attempt)

    async def call(self, method: str, path: str, **kw) -> Any:
        """`request` returning only `result`."""
        return (await self.request(method, path, **kw)).result

    async def get_all(self, path: str, *, params: dict[str, Any] | None = None, per_page: int = 100,
                      max_pages: int = 50) -> list:
        """GET a paged list (page/per_page + result_info) and return every item."""
        items: list = []
        page = 1
        while page <= max_pages:
            response = await self.request("GET", path, params={**(params or {}), "page": page, "per_page": per_page})
            result = response.result or []
            items.extend(result)
            info = response.result_info or {}
            total_pages = info.get("total_pages")
            total = info.get("total_count")
            if not result or len(result) < per_page or (total_pages and page >= total_pages) or (
                total is not None and len(items) >= total
            ):
                break
            page += 1
        return items
