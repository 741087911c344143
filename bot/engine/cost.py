"""Monthly cost estimate in USD: a pricing table (with its source and date) times stated usage.

Pure. The assumptions are returned with the figure so nobody mistakes the estimate for a bill;
a repository overrides them under `cost:` in its config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bot.engine.appspec import AppSpec
from bot.engine.config import CostConfig


@dataclass(frozen=True)
class InstanceType:
    vcpu: float
    memory_gib: float
    disk_gb: float


@dataclass(frozen=True)
class Pricing:
    source: str
    as_of: str
    workers_paid_base: float
    included_requests: float
    per_million_requests: float
    included_cpu_ms: float
    per_million_cpu_ms: float
    do_included_requests: float
    do_per_million_requests: float
    do_included_gb_seconds: float
    do_per_million_gb_seconds: float
    do_memory_gb: float
    container_vcpu_second: float
    container_included_vcpu_seconds: float
    container_gib_second: float
    container_included_gib_seconds: float
    container_disk_gb_second: float
    container_included_disk_gb_seconds: float
    instance_types: dict[str, InstanceType]


PRICING = Pricing(
    source=(
        "https://developers.cloudflare.com/workers/platform/pricing/ , "
        "https://developers.cloudflare.com/durable-objects/platform/pricing/ , "
        "https://developers.cloudflare.com/containers/pricing/"
    ),
    as_of="2025-09-01",
    workers_paid_base=5.00,
    included_requests=10_000_000,
    per_million_requests=0.30,
    included_cpu_ms=30_000_000,
    per_million_cpu_ms=0.02,
    do_included_requests=1_000_000,
    do_per_million_requests=0.15,
    do_included_gb_seconds=400_000,
    do_per_million_gb_seconds=12.50,
    do_memory_gb=0.128,  # billed per active object at 128 MB
    container_vcpu_second=0.000020,
    container_included_vcpu_seconds=375 * 60,
    container_gib_second=0.0000025,
    container_included_gib_seconds=25 * 3600,
    container_disk_gb_second=0.00000007,
    container_included_disk_gb_seconds=200 * 3600,
    instance_types={
        "lite": InstanceType(1 / 16, 0.25, 2),
        "basic": InstanceType(0.25, 1, 4),
        "standard-1": InstanceType(0.5, 4, 8),
        "standard-2": InstanceType(1, 6, 12),
        "standard-3": InstanceType(2, 8, 16),
        "standard-4": InstanceType(4, 12, 20),
    },
)

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class UsageAssumptions:
    requests_per_month: float = 1_000_000
    cpu_ms_per_request: float = 5
    #: Defaults to one DO request per Worker request when the app has Durable Objects.
    durable_object_requests_per_month: float | None = None
    durable_object_active_hours_per_month: float = HOURS_PER_MONTH
    container_active_hours_per_month: float = HOURS_PER_MONTH
    average_running_instances: float = 1

    def merged(self, overrides: CostConfig | None) -> UsageAssumptions:
        if overrides is None:
            return self
        values = asdict(self)
        for key, value in overrides.model_dump(exclude_none=True).items():
            values[key] = value
        return UsageAssumptions(**values)


def _over(used: float, included: float) -> float:
    return max(0.0, used - included)


def _container_cost(instance: InstanceType, instances: float, hours: float, p: Pricing) -> dict[str, float]:
    seconds = instances * hours * 3600
    return {
        "containerCpu": _over(seconds * instance.vcpu, p.container_included_vcpu_seconds) * p.container_vcpu_second,
        "containerMemory": _over(seconds * instance.memory_gib, p.container_included_gib_seconds) * p.container_gib_second,
        "containerDisk": _over(seconds * instance.disk_gb, p.container_included_disk_gb_seconds) * p.container_disk_gb_second,
    }


def estimate_monthly_cost(spec: AppSpec, assumptions: UsageAssumptions | None = None,
                          pricing: Pricing = PRICING) -> dict[str, Any]:
    """`{"monthly", "currency", "monthlyMax", "breakdown", "assumptions", "pricing"}` for `spec`."""
    usage = (assumptions or UsageAssumptions()).merged(spec.cost)
    p = pricing
    breakdown: dict[str, float] = {"workersPaidBase": p.workers_paid_base}
    breakdown["requests"] = _over(usage.requests_per_month, p.included_requests) / 1e6 * p.per_million_requests
    cpu_ms = usage.requests_per_month * usage.cpu_ms_per_request
    breakdown["cpu"] = _over(cpu_ms, p.included_cpu_ms) / 1e6 * p.per_million_cpu_ms
    do_requests = 0.0
    if spec.durable_objects:
        do_requests = (usage.durable_object_requests_per_month
                       if usage.durable_object_requests_per_month is not None else usage.requests_per_month)
        breakdown["durableObjectRequests"] = _over(do_requests, p.do_included_requests) / 1e6 * p.do_per_million_requests
        gb_s = usage.durable_object_active_hours_per_month * 3600 * p.do_memory_gb * max(1, len(spec.durable_objects))
        breakdown["durableObjectDuration"] = _over(gb_s, p.do_included_gb_seconds) / 1e6 * p.do_per_million_gb_seconds
    monthly_max = None
    if spec.container is not None:
        kind = spec.container.instance_type if isinstance(spec.container.instance_type, str) else "basic"
        instance = p.instance_types.get(kind, p.instance_types["basic"])
        instances = min(usage.average_running_instances, spec.container.max_instances)
        breakdown.update(_container_cost(instance, instances, usage.container_active_hours_per_month, p))
        worst = _container_cost(instance, spec.container.max_instances, HOURS_PER_MONTH, p)
        monthly_max = round(sum(v for k, v in breakdown.items() if not k.startswith("container")) + sum(worst.values()), 2)
    total = round(sum(breakdown.values()), 2)
    return {
        "monthly": total,
        "currency": "USD",
        "monthlyMax": monthly_max if monthly_max is not None else total,
        "breakdown": {k: round(v, 4) for k, v in breakdown.items()},
        "assumptions": {
            "requestsPerMonth": usage.requests_per_month,
            "cpuMsPerRequest": usage.cpu_ms_per_request,
            "durableObjectRequestsPerMonth": do_requests,
            "durableObjectActiveHoursPerMonth": usage.durable_object_active_hours_per_month if spec.durable_objects else 0,
            "containerActiveHoursPerMonth": usage.container_active_hours_per_month if spec.container else 0,
            "averageRunningInstances": usage.average_running_instances if spec.container else 0,
            "maxInstances": spec.container.max_instances if spec.container else 0,
            "instanceType": spec.container.instance_type if spec.container else None,
            "note": "monthlyMax assumes every allowed container instance runs all month",
        },
        "pricing": {"source": p.source, "asOf": p.as_of, "plan": "Workers Paid"},
    }
