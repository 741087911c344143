"""Cost estimate and module collection / export detection (pure)."""

from __future__ import annotations

import pytest

from bot.engine.appspec import resolve_seed_app
from bot.engine.config import CostConfig
from bot.engine.cost import PRICING, estimate_monthly_cost
from bot.engine.source import collect_modules, exported_classes
from bot.errors import FlareshipError


def test_cost_states_source_and_assumptions():
    spec = resolve_seed_app({"appName": "x", "containerImage": "ghcr.io/a/b:1"}, "staging")
    cost = estimate_monthly_cost(spec)
    assert cost["currency"] == "USD"
    assert cost["pricing"]["asOf"] == PRICING.as_of and "cloudflare.com" in cost["pricing"]["source"]
    assert cost["monthly"] == pytest.approx(sum(cost["breakdown"].values()), abs=0.01)
    assert cost["breakdown"]["workersPaidBase"] == 5.0
    # basic: 1/4 vCPU, 1 GiB, 4 GB for 730 h, minus the included amounts
    seconds = 730 * 3600
    cpu = (seconds * 0.25 - 375 * 60) * 0.000020
    assert cost["breakdown"]["containerCpu"] == pytest.approx(cpu, abs=0.001)
    assert cost["monthlyMax"] > cost["monthly"]


def test_cost_overrides_from_config():
    spec = resolve_seed_app({"appName": "x"}, "staging")
    spec.durable_objects = []
    assert estimate_monthly_cost(spec)["monthly"] == 5.0
    spec.cost = CostConfig(requests_per_month=110_000_000, cpu_ms_per_request=1)
    cost = estimate_monthly_cost(spec)
    # 100M extra requests at $0.30/M, 80M extra CPU ms at $0.02/M
    assert cost["breakdown"]["requests"] == pytest.approx(30.0)
    assert cost["breakdown"]["cpu"] == pytest.approx(1.6)
    assert cost["assumptions"]["requestsPerMonth"] == 110_000_000


def test_exported_classes():
    source = """
    // export class Commented {}
    /* export class Blocked {} */
    export class AppContainer extends DurableObject {}
    class Counter {}
    class Hidden {}
    const url = "https://example.com"; // export class NotReally
    export { Counter, Hidden as Visible };
    export { Other } from "./other.js";
    export const Made = class {};
    export default class Main {}
    """
    assert exported_classes(source) == {"AppContainer", "Counter", "Visible", "Other", "Made"}


def test_collect_modules_relative_to_main_dir():
    files = {
        "dist/index.js": b"export default {}",
        "dist/lib/util.mjs": b"export const x = 1",
        "dist/data.wasm": b"\0asm",
        "dist/readme.md": b"#",
        "dist/node_modules/x/y.js": b"",
        "src/other.js": b"",
    }
    modules = collect_modules(files, "./dist/index.js")
    assert [m.name for m in modules] == ["index.js", "data.wasm", "lib/util.mjs"]
    assert modules[1].content_type == "application/wasm"
    with pytest.raises(FlareshipError) as info:
        collect_modules(files, "dist/missing.js")
    assert info.value.code == "DEPLOY_001"
