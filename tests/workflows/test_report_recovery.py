"""A deployment that ended without GitHub showing it is reported by the next recovery pass.

Engine events live in one process: when the replica that ran a deployment dies after the end but
before its reporter wrote the check run, or GitHub failed every attempt, nothing else would ever
write it. `Reporter.recover` (every replica, every GITHUB_REPORT_RECOVERY_SECONDS) finds those
deployments in `pr_reports` and writes their end.
"""

from __future__ import annotations

from bot.github.reporter import MAX_REPORT_ATTEMPTS, Reporter
from tests.workflows.conftest import HEAD_SHA


def _fresh_reporter(workflow) -> Reporter:
    """Another replica's reporter: same database and GitHub, none of this one's memory."""
    return Reporter(engine=workflow.services.engine, github=workflow.services.github.client,
                    store=workflow.services.pr_state, public_url="http://127.0.0.1:8000", interval=0.01)


async def test_a_deployment_whose_reporter_died_is_reported_by_another_replica(workflow):
    await workflow.services.reporter.stop()  # the replica's reporter is gone; its engine runs on
    payload = await workflow.comment("/deploy staging")
    [deployment] = [d for d in await workflow.services.engine.list() if d.environment == "staging"]
    assert deployment.status == "completed"
    assert [r["status"] for r in workflow.check_runs(HEAD_SHA, "staging")] != ["completed"]

    other = _fresh_reporter(workflow)
    assert await other.recover(grace=0) == 1
    await other.drain()
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert (run["status"], run["conclusion"], run["external_id"]) == ("completed", "success", deployment.id)
    [github_deployment] = workflow.deployments("staging")
    assert workflow.deployment_states(github_deployment["id"])[-1] == "success"
    assert len(workflow.flareship_comments()) == 1
    assert workflow.reactions(payload["comment"]["id"])[-1] == "rocket"

    before = len(workflow.sim.requests)
    assert await other.recover(grace=0) == 0  # reported now: nothing is written twice
    assert await _fresh_reporter(workflow).recover(grace=0) == 0
    assert len(workflow.sim.requests) == before


async def test_a_deployment_github_refused_to_show_is_reported_once_github_answers(workflow):
    fault = workflow.sim.inject_fault("PATCH", "/repos/*/*/check-runs/*", 502, times=None)
    await workflow.comment("/deploy staging")
    assert fault.hits >= MAX_REPORT_ATTEMPTS  # the reporter gave up, waiting for an event that never comes
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["status"] != "completed"
    # Too recent for the grace period: another replica's reporter may still be writing it.
    assert await workflow.services.reporter.recover(grace=3600) == 0

    workflow.sim.clear_faults()
    assert await workflow.services.reporter.recover(grace=0) == 1
    await workflow.services.reporter.drain()
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert (run["status"], run["conclusion"]) == ("completed", "success")
