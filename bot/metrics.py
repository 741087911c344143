"""Prometheus metrics for one Flareship process, on its own registry (so tests and apps never share).

Other parts call the small hooks (`webhook_delivery`, `github_call`, `cloudflare_call`,
`rate_limit`); deployments and steps are counted by subscribing to the engine's events
(`attach_engine`), and queue depth is read from the engine when `/metrics` is scraped.
HTTP latency by route is observed by `http_metrics_middleware` (bot/http_metrics.py); the process
and platform collectors are prometheus-client's standard ones, on this registry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from bot.services import SERVICES

STEP_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
#: Webhook acknowledgements take milliseconds (bench/webhook_ingest.py); GitHub gives up after 10 s.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: The label of requests no route matched (404s, probes of random paths): never the raw path.
UNMATCHED_ROUTE = "unmatched"
#: The intake's route (handlers/webhooks/intake.py): its latency is GitHub's acknowledgement time.
WEBHOOK_ROUTE = "/webhooks/github"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deployments = Counter(
            "flareship_deployments", "Deployments that reached a final status",
            ["environment", "outcome"], registry=r,
        )
        self.deployments_started = Counter(
            "flareship_deployments_started", "Deployments that started running", ["environment"], registry=r,
        )
        self.step_duration = Histogram(
            "flareship_step_duration_seconds", "Duration of deployment steps",
            ["step", "outcome"], buckets=STEP_BUCKETS, registry=r,
        )
        self.webhooks = Counter(
            "flareship_webhook_deliveries", "GitHub webhook deliveries", ["event", "outcome"], registry=r,
        )
        self.webhooks_ignored = Counter(
            "flareship_webhook_ignored", "Verified deliveries of events no handler takes (acknowledged, not stored)",
            ["event"], registry=r,
        )
        self.cloudflare_calls = Counter(
            "flareship_cloudflare_responses", "Cloudflare API answers by status (reported by the client)",
            ["method", "status"], registry=r,
        )
        self.cloudflare_errors = Counter(
            "flareship_cloudflare_errors", "Cloudflare API requests that failed (status >= 400 or no answer)",
            ["method", "status"], registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "flareship_rate_limit_remaining", "Requests left in the current rate-limit window",
            ["service", "scope"], registry=r,
        )
        self.rate_limit_ratio = Gauge(
            "flareship_rate_limit_headroom_ratio", "Fraction of the rate-limit window still available",
            ["service", "scope"], registry=r,
        )
        self.queue_depth = Gauge("flareship_queue_depth", "Deployments waiting for their environment", registry=r)
        self.active = Gauge("flareship_active_deployments", "Deployments running now", registry=r)
        self.api_requests = Counter(
            "flareship_api_requests", "REST API requests", ["operation", "status"], registry=r,
        )
        self.health = Gauge(
            "flareship_dependency_up", "1 when a dependency's last probe reached it (healthy or degraded), else 0",
            ["service"], registry=r,
        )
        self.degraded = Gauge(
            "flareship_dependency_degraded", "1 when a dependency's last probe found it degraded (slow, 429, access)",
            ["service"], registry=r,
        )
        self.http_duration = Histogram(
            "flareship_http_request_duration_seconds", "HTTP requests served, by route template",
            ["method", "route", "status"], buckets=HTTP_BUCKETS, registry=r,
        )
        self.webhook_ack = Histogram(
            "flareship_webhook_ack_seconds", "Time from a webhook request's arrival to its acknowledgement",
            ["status"], buckets=ACK_BUCKETS, registry=r,
        )
        self.backlog = Gauge(
            "flareship_dispatcher_backlog", "Stored webhook deliveries not handled yet (all replicas)",
            ["status"], registry=r,
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:  # None where the interpreter has no gc.get_stats
            GCCollector(registry=r)
        self._unsubscribe = None
        self._webhook_counters: dict[tuple[str, str], Counter] = {}
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self._ack_children: dict[int, Histogram] = {}
        self._services = None  # set by attach_services

    # -- hooks other areas call ----------------------------------------------------------------

    def webhook_delivery(self, event: str, outcome: str) -> None:
        """outcome: accepted | requeued | duplicate | ignored | ping | rejected (intake) | processed | failed (dispatcher).

        Called on every acknowledgement, so the labelled counters are looked up in a dict of our own
        (`labels()` validates and locks on each call)."""
        key = (event or "unknown", outcome)
        counter = self._webhook_counters.get(key)
        if counter is None:
            counter = self._webhook_counters[key] = self.webhooks.labels(*key)
        counter.inc()

    def webhook_ignored(self, event: str) -> None:
        """A verified delivery no handler takes (the intake's outcome `ignored`)."""
        self.webhooks_ignored.labels(event[:50] or "unknown").inc()

    def cloudflare_call(self, method: str, status: int | None) -> None:
        label = str(status) if status is not None else "error"
        self.cloudflare_calls.labels(method.upper(), label).inc()
        if status is None or status >= 400:
            self.cloudflare_errors.labels(method.upper(), label).inc()

    def rate_limit(self, service: str, scope: str, remaining: float, limit: float | None = None) -> None:
        self.rate_limit_remaining.labels(service, scope).set(remaining)
        if limit:
            self.rate_limit_ratio.labels(service, scope).set(max(0.0, min(1.0, remaining / limit)))

    def deployment_counts(self, active: int, queued: int) -> None:
        self.active.set(active)
        self.queue_depth.set(queued)

    def api_request(self, operation: str, status: int) -> None:
        self.api_requests.labels(operation, str(status)).inc()

    def dependency_status(self, service: str, status: str) -> None:
        """A probe's result (`bot.health`): up 0/1, and degraded as its own 0/1."""
        self.health.labels(service).set(0.0 if status == "unhealthy" else 1.0)
        self.degraded.labels(service).set(1.0 if status == "degraded" else 0.0)

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Called on every request: labelled children are kept in a dict (as `webhook_delivery`)."""
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_duration.labels(method, route, str(status))
        child.observe(seconds)

    def webhook_acknowledged(self, status: int, seconds: float) -> None:
        child = self._ack_children.get(status)
        if child is None:
            child = self._ack_children[status] = self.webhook_ack.labels(str(status))
        child.observe(seconds)

    def dispatcher_backlog(self, counts: dict[str, int]) -> None:
        """Pending and processing deliveries, as the store counted them at scrape time."""
        for status in ("pending", "processing"):
            self.backlog.labels(status).set(counts.get(status, 0))

    # -- engine events ---------------------------------------------------------------------------

    async def on_engine_event(self, event) -> None:
        deployment = event.deployment
        if event.kind == "step" and event.step is not None and event.step.status in ("completed", "failed"):
            if event.step.duration is not None:
                self.step_duration.labels(event.step.name, event.step.status).observe(event.step.duration)
        elif event.kind == "status":
            if deployment.status == "in_progress":
                self.deployments_started.labels(deployment.environment).inc()
            elif deployment.is_final:
                self.deployments.labels(deployment.environment, deployment.status).inc()

    def attach_engine(self, engine) -> None:
        if self._unsubscribe is None and engine is not None:
            self._unsubscribe = engine.subscribe(self.on_engine_event)

    def detach_engine(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def attach_services(self, services) -> None:
        """Export what GitHub and Cloudflare clients already count, read at scrape time."""
        if self._services is None:
            self._services = services
            self.registry.register(ServicesCollector(services))

    def render(self) -> bytes:
        self._refresh_rate_limits()
        return generate_latest(self.registry)

    def _refresh_rate_limits(self) -> None:
        """GitHub's headroom as the client last saw it (kept by `GitHubApp.stats`), read at scrape time."""
        github = getattr(self._services, "github", None)
        for scope, (remaining, limit) in list(getattr(getattr(github, "stats", None), "rate_limits", {}).items()):
            self.rate_limit("github", scope, remaining, limit)


class ServicesCollector(Collector):
    """GitHub requests (from `GitHubApp.stats`) and Cloudflare request budgets, at scrape time.

    Nothing has to call a hook for these: the clients count every request anyway.
    """

    def __init__(self, services):
        self.services = services

    def collect(self):
        requests = CounterMetricFamily(
            "flareship_github_requests", "Requests made to the GitHub API", labels=["method", "route", "status"])
        errors = CounterMetricFamily(
            "flareship_github_errors", "GitHub API requests that failed (status >= 400; 0 = no answer)",
            labels=["method", "route", "status"])
        github = getattr(self.services, "github", None)
        stats = getattr(github, "stats", None)
        for (method, route, status), count in sorted(getattr(stats, "counter", {}).items()):
            labels = [method, route, str(status)]
            requests.add_metric(labels, count)
            if status == 0 or status >= 400:
                errors.add_metric(labels, count)
        yield requests
        yield errors

        sent = CounterMetricFamily(
            "flareship_cloudflare_requests", "Requests made to the Cloudflare API", labels=["token"])
        headroom = GaugeMetricFamily(
            "flareship_cloudflare_budget_headroom_ratio",
            "Fraction of the Cloudflare per-token request window still free", labels=["token"])
        engine = getattr(self.services, "engine", None)
        budgets = getattr(getattr(engine, "cloudflare", None), "_budgets", {}) or {}
        for key, budget in sorted(budgets.items()):
            label = key[:8]  # a prefix of the token's hash: never the token
            sent.add_metric([label], getattr(budget, "total_acquired", 0))
            limit = getattr(budget, "limit", 0) or 0
            if limit:
                headroom.add_metric([label], max(0.0, 1.0 - budget.in_window() / limit))
        yield sent
        yield headroom


def route_label(request: web.Request) -> str:
    """The matched route's template (`/deploy/{deploymentId}/status`), never the raw path, so the
    label's values are bounded by the routes the app registers."""
    resource = getattr(request.match_info.route, "resource", None)
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def http_metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Observe every request's latency by method, route template and status (outermost middleware,
    so the envelope's error handling is inside what is measured); the webhook route's latency is
    also the acknowledgement latency GitHub sees."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        services = request.app.get(SERVICES)  # None only for a request before start-up finished
        if services is not None:
            metrics = services.metrics
            elapsed = time.perf_counter() - started
            route = route_label(request)
            metrics.http_request(request.method, route, status, elapsed)
            if route == WEBHOOK_ROUTE and request.method == "POST":
                metrics.webhook_acknowledged(status, elapsed)
