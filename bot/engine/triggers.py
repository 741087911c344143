"""Desired vs actual for what reaches a Worker: workers.dev, routes, custom domains, crons, consumers.

One small pure function per resource, each answering the calls to make; step 7 makes them
(`bot.engine.triggers_apply`). The rules are README.md's ("Deploying a real project") and
wrangler's (workers-sdk packages/wrangler/src/triggers/deploy.ts): workers.dev only when
`workers_dev` is true, or unset with no route; preview URLs only when `preview_urls` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.engine.appspec import AppSpec, RouteSpec


def workers_dev_enabled(spec: AppSpec) -> bool:
    """`workers_dev` when set, else on only when no route or custom domain is configured."""
    if spec.workers_dev is not None:
        return spec.workers_dev
    return not spec.routes


def subdomain_change(spec: AppSpec, current: dict[str, Any] | None) -> dict[str, Any] | None:
    """The body of the per-script subdomain POST, or None when nothing changes.

    `previews_enabled` is sent only when the config sets `preview_urls`; otherwise the Worker's
    preview URL setting is left as it is.
    """
    current = current or {}
    wanted: dict[str, Any] = {"enabled": workers_dev_enabled(spec)}
    if spec.preview_urls is not None:
        wanted["previews_enabled"] = spec.preview_urls
    if all(bool(current.get(k)) == v for k, v in wanted.items()):
        return None
    return wanted


def route_host(pattern: str) -> str:
    """The hostname of a route pattern (`*.shop.example.com/api/*` -> `shop.example.com`)."""
    host = pattern.split("://", 1)[-1].split("/", 1)[0]
    return host.removeprefix("*.").removeprefix("*")


def route_url(pattern: str) -> str:
    """An https URL for a route pattern or custom domain, without its wildcards."""
    rest = pattern.split("://", 1)[-1]
    host, _, path = rest.partition("/")
    path = path.split("*", 1)[0]
    return f"https://{host.removeprefix('*.').removeprefix('*')}/{path}".rstrip("/")


def health_target(spec: AppSpec, workers_dev_url: str | None) -> str | None:
    """`environments.<env>.url`, else the first custom domain or route, else workers.dev."""
    if spec.url:
        return spec.url
    if spec.routes:
        return route_url(spec.routes[0].pattern)
    return workers_dev_url if workers_dev_enabled(spec) else None


@dataclass
class RoutePlan:
    """Zone routes to create (pattern), repoint (route id, pattern) and delete (route id)."""

    create: list[str] = field(default_factory=list)
    update: list[tuple[str, str]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_zone_routes(script: str, wanted: list[str], actual: list[dict[str, Any]]) -> RoutePlan:
    """Routes of one zone: each wanted pattern points at `script`; the script's other routes go."""
    plan = RoutePlan()
    by_pattern = {r.get("pattern"): r for r in actual}
    for pattern in wanted:
        route = by_pattern.get(pattern)
        if route is None:
            plan.create.append(pattern)
        elif route.get("script") != script:
            plan.update.append((str(route["id"]), pattern))
    plan.delete = [str(r["id"]) for r in actual if r.get("script") == script and r.get("pattern") not in wanted]
    return plan


def plan_domains(script: str, wanted: list[str], actual: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(hostnames to attach, domain ids to detach) for the custom domains of `script`."""
    attached = {d.get("hostname"): d for d in actual if d.get("service") == script}
    attach = [h for h in wanted if h not in attached]
    detach = [str(d["id"]) for h, d in attached.items() if h not in wanted]
    return attach, detach


def plan_schedules(wanted: list[str] | None, actual: list[dict[str, Any]]) -> list[dict[str, str]] | None:
    """The schedules PUT body, or None: crons unset (left alone) or already as wanted."""
    if wanted is None:
        return None
    current = sorted(str(s.get("cron")) for s in actual)
    if current == sorted(wanted):
        return None
    return [{"cron": c} for c in wanted]


def split_routes(routes: list[RouteSpec]) -> tuple[list[RouteSpec], list[RouteSpec]]:
    """(zone routes, custom domains)."""
    return [r for r in routes if not r.custom_domain], [r for r in routes if r.custom_domain]


def consumer_settings(consumer: dict[str, Any]) -> dict[str, Any]:
    """A queue consumer's POST body settings (wrangler triggers/deploy.ts; field names of the API)."""
    names = {"max_batch_size": "batch_size", "max_batch_timeout": "max_wait_time_ms", "max_retries": "max_retries",
             "max_concurrency": "max_concurrency", "retry_delay": "retry_delay"}
    settings: dict[str, Any] = {}
    for key, api in names.items():
        if consumer.get(key) is not None:
            settings[api] = consumer[key] * 1000 if key == "max_batch_timeout" else consumer[key]
    return settings
