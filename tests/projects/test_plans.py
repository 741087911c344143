"""Pure plans: workers.dev, routes, domains, schedules, health target, container rollouts."""

from __future__ import annotations

from bot.cloudflare.containers import instance_configuration, rollout_steps
from bot.engine.appspec import AppSpec, RouteSpec
from bot.engine.triggers import (
    health_target,
    plan_domains,
    plan_schedules,
    plan_zone_routes,
    route_url,
    subdomain_change,
    workers_dev_enabled,
)


def spec(**kw) -> AppSpec:
    return AppSpec(name="a", environment="staging", script_name="a-staging", **kw)


def test_workers_dev_only_when_true_or_unset_without_routes():
    route = RouteSpec(pattern="a.example.com/*", zone_name="example.com")
    assert workers_dev_enabled(spec()) is True
    assert workers_dev_enabled(spec(routes=[route])) is False
    assert workers_dev_enabled(spec(routes=[route], workers_dev=True)) is True
    assert workers_dev_enabled(spec(workers_dev=False)) is False


def test_preview_urls_untouched_unless_set():
    assert subdomain_change(spec(), {"enabled": False, "previews_enabled": True}) == {"enabled": True}
    assert subdomain_change(spec(), {"enabled": True, "previews_enabled": True}) is None
    assert subdomain_change(spec(preview_urls=False), {"enabled": True, "previews_enabled": True}) == \
        {"enabled": True, "previews_enabled": False}


def test_health_target_order():
    assert health_target(spec(url="https://x.example.com"), "https://w.dev") == "https://x.example.com"
    routes = [RouteSpec(pattern="*.shop.example.com/api/*"), RouteSpec(pattern="b.example.com", custom_domain=True)]
    assert health_target(spec(routes=routes), "https://w.dev") == "https://shop.example.com/api"
    assert health_target(spec(), "https://w.dev") == "https://w.dev"
    assert health_target(spec(workers_dev=False), "https://w.dev") is None
    assert route_url("app.example.com") == "https://app.example.com"


def test_routes_domains_and_schedules_reconcile():
    actual = [{"id": "1", "pattern": "a/*", "script": "s"}, {"id": "2", "pattern": "b/*", "script": "other"},
              {"id": "3", "pattern": "old/*", "script": "s"}]
    plan = plan_zone_routes("s", ["a/*", "b/*", "c/*"], actual)
    assert (plan.create, plan.update, plan.delete) == (["c/*"], [("2", "b/*")], ["3"])
    assert plan_zone_routes("s", ["a/*"], actual[:1]).empty
    domains = [{"id": "d1", "hostname": "x.com", "service": "s"}, {"id": "d2", "hostname": "y.com", "service": "s"}]
    assert plan_domains("s", ["x.com", "z.com"], domains) == (["z.com"], ["d2"])
    assert plan_schedules(None, [{"cron": "* * * * *"}]) is None
    assert plan_schedules(["* * * * *"], [{"cron": "* * * * *"}]) is None
    assert plan_schedules([], [{"cron": "* * * * *"}]) == []
    assert plan_schedules(["0 * * * *"], []) == [{"cron": "0 * * * *"}]


def test_container_rollouts_follow_wrangler():
    assert rollout_steps(1) == {"step_percentage": 100}
    assert [s["step_size"]["percentage"] for s in rollout_steps(5)["steps"]] == [10, 100]
    assert rollout_steps(5, 25) == {"step_percentage": 25}
    assert rollout_steps(5, [20, 100])["steps"][0] == {
        "step_size": {"percentage": 20}, "description": "Step 1 of 2 - rollout at 20% of instances"}
    assert instance_configuration("standard-1") == {"instance_type": "standard-1"}
    assert instance_configuration({"vcpu": 0.25, "memory_mib": 1024, "disk_mb": 4000}) == {
        "disk": {"size_mb": 4000}, "memory_mib": 1024, "vcpu": 0.25}
