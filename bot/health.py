"""Background health probes of Cloudflare, GitHub and the container registry.

Probes run on an interval in their own task with short timeouts; `/health/deployment` answers
from the last results in memory, so it stays fast when a dependency hangs or is down.
`readiness` is the other kind of check, of this process's own parts (`GET /readyz`): a load
balancer or Kubernetes sends traffic only to a replica whose database answers, whose schema is
the code's, and whose dispatcher runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

import aiohttp
import sqlalchemy as sa

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher
    from bot.store.db import Database

log = logging.getLogger(__name__)

SERVICES = ("cloudflare", "github", "container_registry")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ProbeResult:
    status: str = "unhealthy"
    response_time_ms: int | None = None
    last_check: str | None = None
    issues: list[str] = field(default_factory=lambda: ["not checked yet"])

    def as_json(self) -> dict:
        return {
            "status": self.status,
            "responseTime": self.response_time_ms,
            "lastCheck": self.last_check,
            "issues": list(self.issues),
        }


@dataclass(frozen=True)
class Probe:
    """One HTTP GET whose answer says the dependency is up (statuses in `ok` or below 500)."""

    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    #: Statuses that mean "reachable, but something about our access is wrong".
    degraded_statuses: dict[int, str] = field(default_factory=dict)
    #: Builds a fresh bearer credential per probe (the GitHub App's JWT expires).
    bearer: Callable[[], str] | None = None


def classify(status: int | None, elapsed_ms: int, *, error: str | None, degraded_after_ms: int,
             degraded_statuses: dict[int, str]) -> tuple[str, list[str]]:
    """healthy / degraded / unhealthy from one probe's outcome (pure)."""
    if error is not None:
        return "unhealthy", [error]
    assert status is not None
    if status >= 500:
        return "unhealthy", [f"HTTP {status} from the service"]
    issues: list[str] = []
    state = "healthy"
    if status == 429:
        state, issues = "degraded", ["Rate limited (HTTP 429)"]
    elif status in degraded_statuses:
        state, issues = "degraded", [degraded_statuses[status]]
    if elapsed_ms > degraded_after_ms:
        state = "degraded"
        issues.append("High response times detected")
    return state, issues


class HealthMonitor:
    def __init__(
        self,
        probes: list[Probe],
        *,
        interval: float = 30.0,
        timeout: float = 5.0,
        degraded_after_ms: int = 1000,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        on_result: Callable[[str, ProbeResult], None] | None = None,
    ):
        self.probes = probes
        self.interval = interval
        self.timeout = timeout
        self.degraded_after_ms = degraded_after_ms
        self.results: dict[str, ProbeResult] = {p.name: ProbeResult() for p in probes}
        self._session_factory = session_factory or (lambda: aiohttp.ClientSession())
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._on_result = on_result

    @classmethod
    def from_settings(cls, settings, *, github_jwt: Callable[[], str] | None = None, **kwargs) -> HealthMonitor:
        """Probes for the configured endpoints; with `github_jwt`, GitHub is probed as the App (GET /app)."""
        cf_headers = {}
        if settings.cloudflare_api_token is not None:
            cf_headers["Authorization"] = f"Bearer {settings.cloudflare_api_token.get_secret_value()}"
        probes = [
            Probe(
                "cloudflare",
                settings.cloudflare_api_url.rstrip("/") + "/user/tokens/verify",
                cf_headers,
                {401: "Cloudflare rejected the configured API token", 403: "Cloudflare rejected the configured API token"}
                if cf_headers else {},
            ),
            Probe(
                "github",
                settings.github_api_url.rstrip("/") + ("/app" if github_jwt else "/rate_limit"),
                {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
                {401: "GitHub rejected the App's JWT (check GITHUB_APP_ID and the private key)",
                 403: "GitHub refused the request (rate limit or access)"},
                bearer=github_jwt,
            ),
            Probe("container_registry", settings.container_registry_url.rstrip("/") + "/v2/"),
        ]
        return cls(probes, **kwargs)

    async def probe(self, probe: Probe) -> ProbeResult:
        assert self._session is not None
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        headers = dict(probe.headers)
        try:
            if probe.bearer is not None:
                headers["Authorization"] = f"Bearer {probe.bearer()}"
            async with asyncio.timeout(self.timeout):
                async with self._session.get(probe.url, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    await resp.read()
        except TimeoutError:
            error = f"No answer within {self.timeout:g}s"
        except aiohttp.ClientError as exc:
            error = f"Unreachable: {type(exc).__name__}"
        except (ValueError, TypeError) as exc:  # e.g. a private key that cannot sign
            error = f"Cannot build the request: {type(exc).__name__}"
        elapsed = int((time.perf_counter() - started) * 1000)
        state, issues = classify(status, elapsed, error=error, degraded_after_ms=self.degraded_after_ms,
                                 degraded_statuses=probe.degraded_statuses)
        return ProbeResult(state, elapsed, _now_iso(), issues)

    async def _check(self, probe: Probe) -> None:
        try:
            result = await self.probe(probe)
        except Exception as exc:  # a probe must never take the others down
            log.warning("health probe %s crashed: %r", probe.name, exc)
            result = ProbeResult("unhealthy", None, _now_iso(), ["probe failed"])
        self.results[probe.name] = result
        if self._on_result is not None:
            self._on_result(probe.name, result)

    async def check_all(self) -> None:
        """Probe every dependency concurrently; each result is published as soon as it is known."""
        await asyncio.gather(*(self._check(p) for p in self.probes))

    async def _loop(self) -> None:
        while True:
            try:
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die
                log.exception("health probes failed")
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._session = self._session_factory()
            self._task = asyncio.create_task(self._loop(), name="flareship-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def snapshot(self) -> dict:
        services = {name: result.as_json() for name, result in self.results.items()}
        healthy = all(r.status != "unhealthy" for r in self.results.values())
        return {"healthy": healthy, "services": services}


#: Readiness must answer before a probe's own timeout (Kubernetes: 1 s by default).
READINESS_TIMEOUT = 0.8


@cache
def head_revision() -> str | None:
    """The newest migration this code ships (alembic's head), read once from the scripts."""
    from alembic.script import ScriptDirectory

    from bot.store.db import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _revision_and_ping(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    connection.execute(sa.text("SELECT 1"))
    return MigrationContext.configure(connection).get_current_revision()


def dispatcher_running(dispatcher: Dispatcher | None) -> bool:
    """The dispatcher's task is alive and registered (bot/dispatcher.py `start`)."""
    task = getattr(dispatcher, "_task", None)
    return task is not None and not task.done() and getattr(dispatcher, "owner", None) is not None


async def readiness(database: Database | None, dispatcher: Dispatcher | None,
                    *, timeout: float = READINESS_TIMEOUT) -> dict[str, str]:
    """What keeps this process from serving, by part (empty when ready).

    Checks: the database answers (one short query), its schema is at the code's head revision,
    the webhook dispatcher runs. Messages name the problem, never a credential.
    """
    problems: dict[str, str] = {}
    if database is None:
        problems["database"] = "not open"
        problems["migrations"] = "unknown: no database"
    else:
        try:
            async with asyncio.timeout(timeout):
                async with database.connect() as conn:
                    current = await conn.run_sync(_revision_and_ping)
        except TimeoutError:
            problems["database"] = f"no answer within {timeout:g}s"
            problems["migrations"] = "unknown: no database"
        except Exception as exc:
            problems["database"] = f"unreachable: {type(exc).__name__}"
            problems["migrations"] = "unknown: no database"
        else:
            head = head_revision()
            if current != head:
                problems["migrations"] = f"schema at revision {current or 'none'}, code expects {head}"
    if not dispatcher_running(dispatcher):
        problems["dispatcher"] = "not running"
    return problems
