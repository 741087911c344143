"""Step 7, Configuring routes and DNS: make the plans of `bot.engine.triggers` happen.

workers.dev is switched on or off as the config says (the account's subdomain is never
registered: a health check that needs one fails with a clear reason), zone routes and custom
domains are reconciled, cron schedules replaced when they differ, queue consumers attached.
Returns the health-check target (README.md "Deploying a real project").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from bot.engine.appspec import AppSpec
from bot.engine.model import ROUTES
from bot.engine.triggers import (
    consumer_settings,
    health_target,
    plan_domains,
    plan_schedules,
    plan_zone_routes,
    route_host,
    split_routes,
    subdomain_change,
    workers_dev_enabled,
)
from bot.errors import FlareshipError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Log = Callable[[str], Awaitable[None]]


async def _zone_id(client: Any, account_id: str, host: str, given: str | None, name: str | None) -> str:
    if given:
        return given
    zone = await client.find_zone(account_id, name or host)
    if zone is None:
        raise FlareshipError("DEPLOY_005", f"no Cloudflare zone on the account serves {host}", step=ROUTES)
    return str(zone["id"])


async def _routes(spec: AppSpec, client: Any, account_id: str, log: Log) -> None:
    zone_routes, domains = split_routes(spec.routes)
    by_zone: dict[str, list[str]] = {}
    for route in zone_routes:
        zone_id = await _zone_id(client, account_id, route_host(route.pattern), route.zone_id, route.zone_name)
        by_zone.setdefault(zone_id, []).append(route.pattern)
    for zone_id, patterns in by_zone.items():
        plan = plan_zone_routes(spec.script_name, patterns, await client.list_routes(zone_id))
        for pattern in plan.create:
            await client.create_route(zone_id, pattern, spec.script_name)
        for route_id, pattern in plan.update:
            await client.update_route(zone_id, route_id, pattern, spec.script_name)
        for route_id in plan.delete:
            await client.delete_route(zone_id, route_id)
        if not plan.empty:
            await log(f"Routes {', '.join(patterns)} -> {spec.script_name}")
    hosts = [route_host(d.pattern) for d in domains]
    if spec.url:
        host = urlparse(spec.url).hostname or ""
        if host not in LOOPBACK and not host.endswith(".workers.dev") and host not in hosts:
            hosts.append(host)
    attach, detach = plan_domains(spec.script_name, hosts, await client.list_domains(account_id,
                                                                                     service=spec.script_name))
    for host in attach:
        zone_id = await _zone_id(client, account_id, host, None, None)
        await client.attach_domain(account_id, host, spec.script_name, zone_id)
        await log(f"Custom domain {host} -> {spec.script_name}")
    for domain_id in detach:
        await client.detach_domain(account_id, domain_id)


async def _schedules(spec: AppSpec, client: Any, account_id: str, log: Log) -> None:
    body = plan_schedules(spec.crons, await client.get_schedules(account_id, spec.script_name)
                          if spec.crons is not None else [])
    if body is not None:
        await client.put_schedules(account_id, spec.script_name, body)
        await log(f"Cron triggers: {', '.join(spec.crons or []) or 'none'}")


async def _consumers(spec: AppSpec, client: Any, account_id: str, log: Log) -> None:
    if not spec.queue_consumers:
        return
    queues = {q.get("queue_name"): q for q in await client.list_queues(account_id)}
    for consumer in spec.queue_consumers:
        queue = queues.get(consumer["queue"])
        if queue is None:
            raise FlareshipError("DEPLOY_011", f"queues.consumers: queue {consumer['queue']} does not exist on the "
                                 "account", step=ROUTES, details={"field": "queues.consumers"})
        existing = await client.list_queue_consumers(account_id, queue["queue_id"])
        body: dict[str, Any] = {"script_name": spec.script_name, "type": "worker",
                                "settings": consumer_settings(consumer)}
        if consumer.get("dead_letter_queue"):
            body["dead_letter_queue"] = consumer["dead_letter_queue"]
        mine = next((c for c in existing if (c.get("script") or c.get("script_name") or c.get("service"))
                     == spec.script_name), None)
        if mine is None:
            await client.add_queue_consumer(account_id, queue["queue_id"], body)
            await log(f"{spec.script_name} consumes queue {consumer['queue']}")
        elif (mine.get("settings") or {}) != body["settings"] \
                or (mine.get("dead_letter_queue") or None) != body.get("dead_letter_queue"):
            # wrangler PUTs the consumer of a Worker that already consumes the queue (deploy-helpers
            # triggers/queue-consumers.ts), so changed settings apply; unchanged ones are left alone.
            await client.update_queue_consumer(account_id, queue["queue_id"], str(mine["consumer_id"]), body)
            await log(f"{spec.script_name}'s consumer of queue {consumer['queue']} updated")


async def apply_triggers(spec: AppSpec, client: Any, account_id: str, url_template: str, log: Log) -> str:
    """Everything that reaches the Worker, as configured; the URL the health check probes."""
    current = await client.get_script_subdomain(account_id, spec.script_name)
    change = subdomain_change(spec, current)
    if change is not None:
        await client.set_script_subdomain(account_id, spec.script_name, change)
        await log(f"workers.dev {'enabled' if change['enabled'] else 'disabled'}"
                  + (f"; preview URLs {'on' if change['previews_enabled'] else 'off'}"
                     if "previews_enabled" in change else ""))
    await _routes(spec, client, account_id, log)
    await _schedules(spec, client, account_id, log)
    await _consumers(spec, client, account_id, log)
    workers_dev_url = None
    if workers_dev_enabled(spec) and not spec.url and not spec.routes:
        subdomain = await client.get_account_subdomain(account_id)
        if not subdomain:
            raise FlareshipError("DEPLOY_005", "the health check needs the Worker's workers.dev URL, but the account "
                                 "has no workers.dev subdomain; Flareship never registers one: choose it in the "
                                 "Cloudflare dashboard (Workers & Pages), or set environments.<env>.url or routes",
                                 step=ROUTES)
        workers_dev_url = url_template.format(script=spec.script_name, subdomain=subdomain)
    target = health_target(spec, workers_dev_url)
    if target is None:
        raise FlareshipError("DEPLOY_005", "nothing reaches the Worker: workers_dev is false and no route, custom "
                             "domain or environments.<env>.url is configured", step=ROUTES)
    return target
