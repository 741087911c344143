"""Concurrency (one runs, one waits with its position shown), head moves, and idempotence."""

from __future__ import annotations

import asyncio
import copy

import sqlalchemy as sa

from bot.engine import DeploymentEvent
from bot.github.reporter import Reporter
from bot.store.deliveries import webhook_deliveries
from tests.plugins.webhooks import load_fixture
from tests.workflows.conftest import FILES, HEAD_SHA, REPOSITORY

OTHER_SHA = "beef" + "0" * 36
NEW_HEAD = "a11ce" + "0" * 35


def slow_cloudflare(workflow, seconds: float = 0.05) -> None:
    """Every Cloudflare call takes a little while, so a deployment is still running when the next arrives."""
    workflow.cloudflare_sim.sim.set_latency(seconds)


def check_run_writes(workflow, run_id: int | None = None) -> list[dict]:
    bodies = []
    for r in workflow.sim.requests:
        if (r.method in ("POST", "PATCH") and "/check-runs" in r.path and isinstance(r.body, dict)
                and (run_id is None or r.path.endswith(f"/{run_id}") or r.method == "POST")):
            bodies.append(r.body)
    return bodies


async def test_two_prs_deploying_staging_at_once_queue_and_both_finish(workflow):
    workflow.add_pull_request(8, head_sha=OTHER_SHA, head_ref="other")
    slow_cloudflare(workflow)
    first = workflow.comment_payload("/deploy staging", number=7)
    second = workflow.comment_payload("/deploy staging", number=8)
    await workflow.post("issue_comment", first)
    await workflow.post("issue_comment", second)
    await workflow.settle(timeout=40)

    [run7] = workflow.check_runs(HEAD_SHA, "staging")
    [run8] = workflow.check_runs(OTHER_SHA, "staging")
    assert run7["conclusion"] == "success" and run8["conclusion"] == "success"
    engine = workflow.services.engine
    d7, d8 = await engine.get(run7["external_id"]), await engine.get(run8["external_id"])
    assert d8.started_at >= d7.ended_at  # one at a time per environment
    titles = [b.get("output", {}).get("title") for b in check_run_writes(workflow)]
    assert "Queued: position 1 for staging" in titles, titles
    assert (await engine.live_release(REPOSITORY, "staging")).sha == OTHER_SHA
    assert workflow.reactions(first["comment"]["id"]) == ["eyes", "rocket"]
    assert workflow.reactions(second["comment"]["id"]) == ["eyes", "rocket"]


async def test_head_moving_before_a_queued_deploy_starts_deploys_nothing(workflow):
    workflow.add_pull_request(8, head_sha=OTHER_SHA, head_ref="other")
    slow_cloudflare(workflow)
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=8))
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=7))
    engine = workflow.services.engine

    async def queued_for_pr7():
        return [d for d in await engine.list(repository=REPOSITORY) if d.pull_request == 7 and d.status == "queued"]

    for _ in range(500):
        if await queued_for_pr7():
            break
        await asyncio.sleep(0.01)
    assert await queued_for_pr7(), "PR 7's deploy should wait behind PR 8's"
    # PR 7's head moves while its deploy waits behind PR 8's.
    workflow.sim.set_file(REPOSITORY, NEW_HEAD, "dist/index.js", FILES["dist/index.js"])
    workflow.sim.repo(REPOSITORY).pulls[7].head_sha = NEW_HEAD
    sync = copy.deepcopy(load_fixture("pull_request.synchronize"))
    workflow.point_at_repository(sync)
    sync.update(number=7, before=HEAD_SHA, after=NEW_HEAD)
    sync["pull_request"]["number"] = 7
    await workflow.post("pull_request", sync)
    await workflow.settle(timeout=40)

    [run7] = workflow.check_runs(HEAD_SHA, "staging")
    assert run7["conclusion"] == "cancelled"
    assert "head moved from `c0ffee0` to `a11ce00`" in run7["output"]["summary"]
    d7 = await workflow.services.engine.get(run7["external_id"])
    assert d7.status == "cancelled" and d7.started_at is None
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == OTHER_SHA


async def test_redelivered_comment_deploys_once(workflow):
    payload = workflow.comment_payload("/deploy staging")
    await workflow.post("issue_comment", payload)
    await workflow.settle()
    await workflow.post("issue_comment", payload)  # a new delivery id for the same comment
    await workflow.settle()
    assert len(workflow.check_runs(HEAD_SHA, "staging")) == 1
    assert len(workflow.deployments("staging")) == 1
    assert len(workflow.flareship_comments()) == 1
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    assert len(await workflow.services.engine.list(repository=REPOSITORY)) == 1


async def test_a_stored_delivery_handled_twice_has_the_effect_of_once(workflow):
    payload = await workflow.comment("/deploy staging")
    writes_before = len(workflow.sim.writes)
    database = workflow.services.database
    async with database.begin() as conn:  # as if the process died before marking it done
        await conn.execute(sa.update(webhook_deliveries).values(status="pending"))
    workflow.client.server.app[__import__("bot.dispatcher", fromlist=["DISPATCHER"]).DISPATCHER].wake()
    await workflow.settle()
    async with database.connect() as conn:
        statuses = (await conn.execute(sa.select(webhook_deliveries.c.status))).scalars().all()
    assert statuses == ["done"]
    assert len(workflow.sim.writes) == writes_before
    assert len(await workflow.services.engine.list(repository=REPOSITORY)) == 1
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]


async def test_a_restarted_reporter_edits_what_the_last_one_created(workflow):
    await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    final = await workflow.services.engine.get(run["external_id"])
    fresh = Reporter(engine=workflow.services.engine, github=workflow.services.github.client,
                     store=workflow.services.pr_state, public_url="http://127.0.0.1:8000", interval=0.01)
    before = len(workflow.sim.requests)
    await fresh.on_event(DeploymentEvent(kind="status", deployment=final))
    await fresh.drain()
    new = workflow.sim.requests[before:]
    assert [(r.method, r.template or r.path) for r in new if r.method == "POST" and "check-runs" in r.path] == []
    assert not [r for r in new if r.method == "POST" and r.path.endswith("/comments")]
    assert not [r for r in new if r.path.endswith("/deployments")]
    assert len(workflow.check_runs(HEAD_SHA, "staging")) == 1
    assert len(workflow.flareship_comments()) == 1


async def test_head_checked_again_when_a_queued_deploy_starts(workflow):
    """No synchronize webhook arrived (yet): the head is read again when the deploy's turn comes."""
    workflow.add_pull_request(8, head_sha=OTHER_SHA, head_ref="other")
    slow_cloudflare(workflow)
    engine = workflow.services.engine
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=8))
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging", number=7))
    for _ in range(500):
        if [d for d in await engine.list(repository=REPOSITORY) if d.pull_request == 7 and d.status == "queued"]:
            break
        await asyncio.sleep(0.01)
    workflow.sim.set_file(REPOSITORY, NEW_HEAD, "dist/index.js", FILES["dist/index.js"])
    workflow.sim.repo(REPOSITORY).pulls[7].head_sha = NEW_HEAD
    await workflow.settle(timeout=40)

    [run7] = workflow.check_runs(HEAD_SHA, "staging")
    assert run7["conclusion"] == "cancelled", run7["output"]
    assert "head moved from `c0ffee0` to `a11ce00`" in run7["output"]["summary"]
    d7 = await engine.get(run7["external_id"])
    assert d7.step("Uploading Worker version").status != "completed"
    assert (await engine.live_release(REPOSITORY, "staging")).sha == OTHER_SHA
    assert [d for d in workflow.deployments("staging") if d["ref"] == HEAD_SHA] == []


async def test_production_history_marks_the_superseded_deployment_inactive(workflow):
    workflow.sim.add_review(REPOSITORY, 7, user="carol", state="APPROVED", commit_id=HEAD_SHA)
    workflow.sim.add_status(REPOSITORY, HEAD_SHA, context="ci/tests", state="success")
    await workflow.comment("/deploy staging")
    await workflow.comment("/deploy production", user="lead")
    await workflow.comment("/deploy production", user="lead")
    first, second = sorted(workflow.deployments("production"), key=lambda d: d["id"])
    assert workflow.deployment_states(first["id"]) == ["in_progress", "success", "inactive"]
    assert workflow.deployment_states(second["id"]) == ["in_progress", "success"]
    assert len(workflow.check_runs(HEAD_SHA, "production")) == 1


async def test_github_errors_while_reporting_are_retried(workflow):
    workflow.sim.inject_fault("PATCH", "/repos/*/check-runs/*", status=500, times=2)
    workflow.sim.inject_fault("POST", "/repos/*/deployments/*/statuses", status=502, times=1)
    payload = await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"
    [gh_dep] = workflow.deployments("staging")
    assert workflow.deployment_states(gh_dep["id"]) == ["in_progress", "success"]
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]


async def test_a_restarted_reporter_shows_the_stored_log(workflow):
    await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    final = await workflow.services.engine.get(run["external_id"])
    run["output"]["text"] = None
    fresh = Reporter(engine=workflow.services.engine, github=workflow.services.github.client,
                     store=workflow.services.pr_state, public_url="http://127.0.0.1:8000", interval=0.01)
    await fresh.on_event(DeploymentEvent(kind="status", deployment=final))
    await fresh.drain()
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert "Deployment completed" in run["output"]["text"] and "Queued" in run["output"]["text"]
