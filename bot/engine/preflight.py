"""Pre-flight checks: resources (409), quotas and plan (402), dependencies (424).

The decisions are pure functions over facts; `gather_facts` is the only part that talks to
Cloudflare and the registry, so the same checks run in `prepare` and in the pipeline's steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from bot.cloudflare.errors import (
    CloudflareAPIError,
    CloudflareError,
    PermissionDenied,
    QuotaExceeded,
)
from bot.engine.appspec import AppSpec
from bot.engine.cost import PRICING
from bot.engine.failures import catalogue_error
from bot.engine.model import RESOURCES
from bot.errors import FlareshipError

if TYPE_CHECKING:
    from bot.cloudflare.client import CloudflareClient

#: Worker scripts per account; more are refused with Cloudflare error 10037
#: (https://developers.cloudflare.com/workers/platform/limits/#number-of-workers).
WORKER_LIMITS = {"free": 100, "paid": 500}


@dataclass
class Facts:
    """What pre-flight learned from Cloudflare, the registry, the source and Flareship's records."""

    script_exists: bool = False
    worker_count: int = 0
    workers_plan: str = "unknown"  # free | paid | unknown
    containers_limits: dict[str, Any] | None = None
    containers_error: str | None = None
    image_digest: str | None = None
    image_error: str | None = None
    exported_classes: set[str] | None = None
    other_owners: set[str] = field(default_factory=set)
    busy_with: str | None = None
    lock: dict[str, Any] | None = None


@dataclass
class Problem:
    check: str  # resources | quotas | dependencies
    code: str
    message: str
    field: str | None = None


def compatibility_problem(value: str, today: date) -> str | None:
    try:
        parsed = date.fromisoformat(value)
    except (TypeError, ValueError):
        return f"compatibility_date {value!r} is not a valid date (YYYY-MM-DD)"
    if parsed > today:
        return f"compatibility_date {value} is in the future (today is {today.isoformat()})"
    if parsed < date(2021, 11, 3):
        return f"compatibility_date {value} is before ES modules were supported (2021-11-03)"
    return None


def instance_problem(instance_type: str | dict[str, Any], max_instances: int, limits: dict[str, Any] | None) -> str | None:
    if isinstance(instance_type, dict):  # wrangler's custom form: {vcpu, memory_mib, disk_mb}
        spec: Any = SimpleNamespace(vcpu=float(instance_type.get("vcpu", 0.0625)),
                                    memory_gib=float(instance_type.get("memory_mib", 256)) / 1024,
                                    disk_gb=float(instance_type.get("disk_mb", 2000)) / 1000)
        instance_type = "custom"
    else:
        spec = PRICING.instance_types.get(instance_type)
    if spec is None:
        return f"unknown instance type {instance_type!r}"
    if not limits:
        return None
    vcpu = limits.get("vcpu_per_deployment")
    mem = limits.get("memory_mib_per_deployment")
    disk = limits.get("disk_mb_per_deployment")
    if vcpu is not None and spec.vcpu > float(vcpu):
        return f"instance type {instance_type} needs {spec.vcpu} vCPU; the account allows {vcpu} per container"
    if mem is not None and spec.memory_gib * 1024 > float(mem):
        return f"instance type {instance_type} needs {int(spec.memory_gib * 1024)} MiB; the account allows {mem} MiB"
    if disk is not None and spec.disk_gb * 1000 > float(disk):
        return f"instance type {instance_type} needs {int(spec.disk_gb * 1000)} MB disk; the account allows {disk} MB"
    total_vcpu = limits.get("total_vcpu")
    if total_vcpu is not None and spec.vcpu * max_instances > float(total_vcpu):
        return (f"max_instances {max_instances} x {spec.vcpu} vCPU exceeds the account's total of {total_vcpu} vCPU")
    total_mem = limits.get("total_memory_mib")
    if total_mem is not None and spec.memory_gib * 1024 * max_instances > float(total_mem):
        return (f"max_instances {max_instances} x {int(spec.memory_gib * 1024)} MiB exceeds the account's "
                f"total of {total_mem} MiB")
    return None


def evaluate(spec: AppSpec, facts: Facts, today: date) -> tuple[dict[str, str], list[Problem]]:
    """Pure: the three check results and every problem found."""
    problems: list[Problem] = []
    if facts.lock:
        who = facts.lock.get("actor")
        why = facts.lock.get("reason") or "no reason given"
        when = facts.lock.get("created_at")
        problems.append(Problem("resources", "DEPLOY_009",
                                f"{spec.environment} is locked by {who} since {when}: {why}"))
    if facts.busy_with:
        problems.append(Problem("resources", "DEPLOY_009",
                                f"deployment {facts.busy_with} is already in progress for {spec.environment}"))
    if facts.other_owners:
        owners = ", ".join(sorted(facts.other_owners))
        problems.append(Problem("resources", "DEPLOY_012",
                                f"Worker {spec.script_name} is already deployed by Flareship for {owners}",
                                field="app.name"))
    limit = WORKER_LIMITS.get(facts.workers_plan)
    if not facts.script_exists and limit is not None and facts.worker_count >= limit:
        problems.append(Problem("quotas", "DEPLOY_002",
                                f"the account has {facts.worker_count} Workers, the {facts.workers_plan} plan's limit is {limit}"))
    if spec.container is not None:
        if facts.workers_plan == "free" or facts.containers_error == "plan":
            problems.append(Problem("quotas", "DEPLOY_002", "Containers need the Workers Paid plan"))
        else:
            for c in spec.containers or [spec.container]:
                issue = instance_problem(c.instance_type, c.max_instances, facts.containers_limits)
                if issue:
                    where = "" if c is spec.container else f" ({c.class_name})"
                    problems.append(Problem("quotas", "DEPLOY_002", issue + where, field="app.container.instance_type"))
        if facts.image_error or not facts.image_digest:
            problems.append(Problem("dependencies", "DEPLOY_011",
                                    f"image {spec.container.image} does not resolve to a digest: "
                                    f"{facts.image_error or 'not found'}", field="app.container.image"))
    date_issue = compatibility_problem(spec.compatibility_date, today)
    if date_issue:
        problems.append(Problem("dependencies", "DEPLOY_011", date_issue, field="app.compatibility_date"))
    if facts.exported_classes is not None:
        missing = [c for c in spec.class_names if c not in facts.exported_classes]
        if missing:
            problems.append(Problem("dependencies", "DEPLOY_011",
                                    f"Durable Object class(es) {', '.join(missing)} not exported by the main module "
                                    f"{spec.main_module}", field="app.durable_objects"))
    checks = {name: "pass" for name in ("resources", "quotas", "dependencies")}
    for p in problems:
        checks[p.check] = "fail"
    return checks, problems


def raise_first(checks: dict[str, str], problems: list[Problem], *, step: str | None = None) -> None:
    """Raise the first problem (resources, then quotas, then dependencies) with every check listed."""
    if not problems:
        return
    order = {"resources": 0, "quotas": 1, "dependencies": 2}
    first = sorted(problems, key=lambda p: order[p.check])[0]
    details = {"checks": checks, "problems": [{"check": p.check, "code": p.code, "message": p.message,
                                                 **({"field": p.field} if p.field else {})} for p in problems]}
    if first.field:
        details["field"] = first.field
    raise FlareshipError(first.code, first.message, step=step, details=details)


async def cloudflare_facts(spec: AppSpec, client: CloudflareClient, account_id: str, facts: Facts, *,
                           scripts: list[dict[str, Any]] | None = None) -> Facts:
    """Scripts (count, existence) and the Workers plan / container limits, from Cloudflare.

    `scripts`: the account's Workers when the caller has just read them (step 2's probe), so the
    list is not fetched twice in one run."""
    try:
        if scripts is None:
            scripts = await client.list_scripts(account_id)
    except CloudflareError as exc:
        raise catalogue_error(exc, RESOURCES) from None
    names = {s.get("id") or s.get("name") for s in scripts or []}
    facts.script_exists = spec.script_name in names
    facts.worker_count = len(names)
    try:
        facts.containers_limits = (await client.containers_account(account_id) or {}).get("limits") or {}
        facts.workers_plan = "paid"
    except QuotaExceeded:
        facts.workers_plan = "free"
        facts.containers_error = "plan"
    except PermissionDenied:
        facts.containers_error = "permission"
    except CloudflareAPIError as exc:
        if exc.status == 402:
            facts.containers_error = "plan"
            facts.workers_plan = "free"
        else:
            facts.containers_error = exc.public_message()
    return facts


#: Binding type -> (the field naming the resource, what to call it, the listing's key field).
BOUND_RESOURCES = {
    "kv_namespace": ("namespace_id", "KV namespace", "kv"),
    "d1": ("id", "D1 database", "d1"),
    "r2_bucket": ("bucket_name", "R2 bucket", "r2"),
    "queue": ("queue_name", "queue", "queues"),
}


def missing_bound_resources(spec: AppSpec, existing: dict[str, set[str]]) -> list[Problem]:
    """Pure: one DEPLOY_011 per binding whose KV namespace, D1 database, R2 bucket or queue is not on
    the account (README.md "Deploying a real project"); `existing` maps kv/d1/r2/queues to ids or names."""
    problems = []
    for binding in spec.bindings():
        kind = binding.get("type")
        if kind not in BOUND_RESOURCES:
            continue
        field_name, what, listing = BOUND_RESOURCES[kind]
        ref = binding.get(field_name)
        if ref not in existing.get(listing, set()):
            problems.append(Problem("dependencies", "DEPLOY_011",
                                    f"binding {binding.get('name')}: {what} {ref} does not exist on the account",
                                    field=spec.wrangler_file or "app"))
    for consumer in spec.queue_consumers:
        if consumer.get("queue") not in existing.get("queues", set()):
            problems.append(Problem("dependencies", "DEPLOY_011",
                                    f"queues.consumers: queue {consumer.get('queue')} does not exist on the account",
                                    field=spec.wrangler_file or "app"))
    return problems


async def bound_resources(spec: AppSpec, client: Any, account_id: str) -> dict[str, set[str]]:
    """The account's KV namespaces, D1 databases, R2 buckets and queues the spec's bindings need
    (only the listings it needs are read)."""
    kinds = {BOUND_RESOURCES[b["type"]][2] for b in spec.bindings() if b.get("type") in BOUND_RESOURCES}
    if spec.queue_consumers:
        kinds.add("queues")
    out: dict[str, set[str]] = {}
    if "kv" in kinds:
        out["kv"] = {n.get("id") for n in await client.list_kv_namespaces(account_id)}
    if "d1" in kinds:
        out["d1"] = {d.get("uuid") for d in await client.list_d1_databases(account_id)}
    if "r2" in kinds:
        out["r2"] = {b.get("name") for b in await client.list_r2_buckets(account_id)}
    if "queues" in kinds:
        out["queues"] = {q.get("queue_name") for q in await client.list_queues(account_id)}
    return out
