"""Property-based: schemathesis drives the live server (loopback) from /openapi.json.

Bounded (a few examples per operation) so the suite stays fast; asserts no 5xx, and that every
status code, content type and response body conforms to the document.
"""

from __future__ import annotations

import asyncio

import hypothesis
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis import checks as base_checks
from schemathesis import experimental
from schemathesis.runner import events
from schemathesis.specs.openapi import checks as oa_checks

from bot.services import SERVICES
from tests.api.conftest import cloudflare_settings
from tests.plugins.github_sim import seed_repo

MAX_EXAMPLES = 4


def run_schemathesis(base_url: str, token: str) -> list[str]:
    """Run the checks against the live server; return one line per failure or error."""
    experimental.OPEN_API_3_1.enable()
    schema = schemathesis.from_uri(f"{base_url}/openapi.json", base_url=base_url)
    # Rotating the caller's token would lock the run out; it is tested on its own.
    selected = schema.exclude(operation_id="refreshTokens")
    runner = schemathesis.runner.from_schema(
        selected,
        checks=[
            base_checks.not_a_server_error,
            oa_checks.status_code_conformance,
            oa_checks.content_type_conformance,
            oa_checks.response_schema_conformance,
        ],
        hypothesis_settings=hypothesis.settings(
            max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        ),
        headers={"Authorization": f"Bearer {token}"},
        request_timeout=10_000,
    )
    problems: list[str] = []
    finished = None
    for event in runner.execute():
        if isinstance(event, events.AfterExecution):
            for check in event.result.checks:
                if check.value.name == "FAILURE" or str(check.value) .endswith("failure"):
                    problems.append(f"{event.result.verbose_name}: {check.name}: {check.message} "
                                    f"[{check.response.status_code if check.response else '-'}]")
            for error in event.result.errors:
                problems.append(f"{event.result.verbose_name}: error: {error.exception}")
        elif isinstance(event, events.Finished):
            finished = event
        elif isinstance(event, events.InternalError):
            problems.append(f"internal error: {event.message} {event.exception}")
    assert finished is not None
    return problems


@pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)  # one backend is enough here
@pytest.mark.slow
async def test_schemathesis_against_the_live_server(github_sim, sim_env, make_api):
    seed_repo(github_sim)
    api = await make_api(**cloudflare_settings(sim_env), github_api_url=github_sim.url,
                         github_app_id=str(github_sim.app_id), github_private_key=SecretStr(github_sim.app_private_key),
                         github_write_interval=0)
    token = await api.token("admin", name="schemathesis")
    base_url = str(api.client.make_url("")).rstrip("/")
    problems = await asyncio.to_thread(run_schemathesis, base_url, token)
    assert problems == [], "\n".join(problems)
    assert api.app[SERVICES].engine is not None
