"""The other commands end to end: /rollback, /retry, /cancel, /status, /prepare, /validate, --dry-run,
and the coalesced check-run updates of a slow deployment."""

from __future__ import annotations

import itertools
import time

from tests.workflows.conftest import FILES, HEAD_SHA, REPOSITORY

SECOND_SHA = "5ec0" + "0" * 36


def notice(workflow, number: int = 7) -> str:
    [comment] = workflow.flareship_comments(number)
    return comment.body


async def deploy_two_versions(workflow) -> None:
    await workflow.comment("/deploy staging")
    workflow.sim.repo(REPOSITORY).pulls[7].head_sha = SECOND_SHA
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, ".github/flareship.yml", FILES[".github/flareship.yml"])
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, "dist/index.js", FILES["dist/index.js"] + "// v2\n")
    await workflow.comment("/deploy staging")
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == SECOND_SHA


async def test_rollback_command(workflow):
    await deploy_two_versions(workflow)
    refused = await workflow.comment("/rollback staging", user="reader")
    assert workflow.reactions(refused["comment"]["id"]) == ["eyes", "confused"]
    payload = await workflow.comment("/rollback staging", user="dev")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == HEAD_SHA
    assert "↩️" not in notice(workflow) and "(rollback)" in notice(workflow)


async def test_rollback_with_nothing_live_is_explained(workflow):
    await workflow.comment("/rollback production", user="lead")
    assert "nothing is live on **production**" in notice(workflow)


async def test_retry_command_resumes_the_failed_deployment(workflow):
    workflow.cloudflare_sim.sim.inject_fault("PUT", "*/workers/scripts/widgets-staging", status=400, times=1)
    await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "failure"
    payload = await workflow.comment("/retry")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"


async def test_retry_without_a_failure_is_explained(workflow):
    await workflow.comment("/retry staging")
    assert "no failed deployment on **staging**" in notice(workflow)


async def test_cancel_command_stops_a_queued_deploy(workflow):
    workflow.add_pull_request(8, head_sha="beef" + "0" * 36, head_ref="other")
    workflow.cloudflare_sim.sim.set_latency(0.05)
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=8))
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=7))
    await workflow.post("issue_comment", workflow.comment_payload("/cancel", number=7))
    await workflow.settle(timeout=40)
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "cancelled"
    assert "Cancelling" in notice(workflow, 7)


async def test_status_command(workflow):
    await workflow.comment("/deploy staging")
    await workflow.comment("/lock production quiet week", user="lead")
    payload = await workflow.comment("/status", user="reader")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    body = notice(workflow)
    assert "**staging**: runs `c0ffee0`" in body
    assert "**production**: nothing live; 🔒 **production** is locked by @lead" in body


async def test_prepare_and_validate_change_nothing(workflow):
    await workflow.comment("/prepare staging")
    assert "pre-flight" in notice(workflow) and "Nothing was changed" in notice(workflow)
    await workflow.comment("/validate")
    assert "credentials are valid" in notice(workflow)
    assert workflow.check_runs() == [] and workflow.deployments() == []


async def test_dry_run_is_neutral_and_offers_no_rollback(workflow):
    await workflow.comment("/deploy staging --dry-run")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "neutral" and run["output"]["title"] == "Dry run passed"
    assert run["actions"] == []
    assert await workflow.services.engine.live_release(REPOSITORY, "staging") is None


async def test_slow_deploy_updates_are_coalesced(workflow):
    workflow.cloudflare_sim.sim.set_latency(0.08)
    workflow.services.reporter.interval = 0.4
    started = time.monotonic()
    await workflow.comment("/deploy staging")
    elapsed = time.monotonic() - started
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"
    writes = [r for r in workflow.sim.requests if "/check-runs" in r.path and r.method in ("POST", "PATCH")]
    titles = [r.body["output"]["title"] for r in writes]
    assert any(t.startswith("step ") and "/8: " for t in titles), titles
    assert len(writes) <= 2 + elapsed / 0.4, (elapsed, titles)
    gaps = [b.time - a.time for a, b in itertools.pairwise(writes)]
    assert all(gap >= 0.35 for gap in gaps), gaps


async def test_rollback_to_a_named_release(workflow):
    await workflow.comment("/deploy staging")
    first_release = (await workflow.services.engine.live_release(REPOSITORY, "staging")).id
    workflow.sim.repo(REPOSITORY).pulls[7].head_sha = SECOND_SHA
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, ".github/flareship.yml", FILES[".github/flareship.yml"])
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, "dist/index.js", FILES["dist/index.js"] + "// v2\n")
    await workflow.comment("/deploy staging")
    await workflow.comment("/rollback staging to rel_doesnotexist")
    assert "rel_doesnotexist" in notice(workflow)
    payload = await workflow.comment(f"/rollback staging to {first_release}")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == HEAD_SHA
