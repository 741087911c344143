"""The project-shape fixtures (tests/fixtures/projects/), shared by the tests that deploy them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID as ACC

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "projects"
ZONE = "e" * 32


def project_files(name: str) -> dict[str, bytes]:
    root = FIXTURES / name
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()
            and p.name != "expected-metadata.json"}


def expected(name: str) -> dict:
    return json.loads((FIXTURES / name / "expected-metadata.json").read_text())


def seed_resources(sim) -> None:
    """What the fixtures bind to, on the simulated account (a binding to anything else is refused)."""
    storage = sim.storage
    storage.add_kv_namespace(ACC, "todo", id="cf8aa41453dc4be09ff86530895773e1")
    storage.add_kv_namespace(ACC, "cache-staging", id="00000000000000000000000000000002")
    storage.add_d1_database(ACC, "d1-template-database", uuid_="151f7d9b-365f-41d7-83ed-0bf4eeef5086")
    storage.add_r2_bucket(ACC, "order-files")
    storage.add_queue(ACC, "orders-queue")
    sim.add_zone(ZONE, "example.com", ACC)


def uploads(cloudflare_sim, script: str) -> list[dict]:
    script_state = cloudflare_sim.sim.script(ACC, script)
    return [v.metadata for v in script_state.versions] if script_state else []
