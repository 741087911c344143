"""A pull request's preview from open to close, through real webhooks, in both modes."""

from __future__ import annotations

import asyncio

import httpx
import pytest


async def _until(predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(url)


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_open_push_twice_close(previews, previews_mode):
    first = previews.open_pr(7)
    await previews.opened(7)
    [deployment] = await previews.deployments()
    assert deployment.status == "completed", deployment.error
    assert deployment.environment == "preview/pr-7" and deployment.sha == first
    record = await previews.record()
    assert record.state == "active" and record.mode == previews_mode and record.url
    assert (await _get(record.url)).status_code == 200
    assert first[:7] in previews.main_module()
    [gh] = previews.gh_deployments()
    assert gh["transient_environment"] is True and gh["production_environment"] is False
    assert previews.states(gh)[-1] == "success"
    statuses = previews.sim.repo("acme/shop").deployment_statuses[gh["id"]]
    assert statuses[-1]["environment_url"] == record.url
    [run] = previews.check_runs(first)
    assert run["conclusion"] == "success"
    body = previews.comment_body()
    assert "| **preview** |" in body and record.url in body
    if previews_mode == "previews":
        assert record.script_name == "shop-staging" and record.deployment_url
        assert f"[this push]({record.deployment_url})" in body
    else:
        assert record.script_name == "shop-staging-pr-7"

    # Two pushes in a row: the first one's preview deployment is cancelled, not queued behind.
    # Its upload is held at Cloudflare until the next push has arrived, however loaded the machine.
    upload = (("POST", "re:/accounts/[^/]+/workers/workers/shop-staging/previews/[^/]+/deployments")
              if previews_mode == "previews" else ("PUT", "re:/accounts/[^/]+/workers/scripts/shop-staging-pr-7"))
    held = previews.cloudflare_sim.sim.inject_fault(*upload, delay=2, after=True, times=1)
    second = await previews.pushed(7, settle=False)
    await _until(lambda: held.hits > 0)
    third = await previews.pushed(7, settle=False)
    await previews.settle()
    by_sha = {d.sha: d for d in await previews.deployments()}
    assert by_sha[second].status == "cancelled"
    # Cancelled for the newer push: "Superseded by a newer push" when it had started, "the pull
    # request's head moved" (handlers/webhooks/head_moves.py) when it was still queued.
    assert third[:7] in previews.check_runs(second)[0]["output"]["summary"]
    assert by_sha[third].status == "completed", by_sha[third].error
    assert third[:7] in previews.main_module()
    assert (await _get(record.url)).status_code == 200

    await previews.closed(7)
    record = await previews.record()
    assert record.state == "removed" and record.last_error is None
    assert not previews.on_cloudflare(7)
    assert (await _get(record.url)).status_code == 404
    gh_deployments = previews.gh_deployments()
    assert len(gh_deployments) >= 2
    assert all(previews.states(d)[-1] == "inactive" for d in gh_deployments)
    assert "🗑️ removed" in previews.comment_body()


async def test_reopened_pr_gets_a_fresh_preview_and_a_mode_change_removes_the_old_one(previews):
    previews.open_pr(7)
    await previews.opened(7)
    await previews.closed(7)
    assert not previews.on_cloudflare(7)
    await previews.reopened(7)
    record = await previews.record()
    assert record.state == "active" and record.mode == "script" and previews.on_cloudflare(7)
    assert [d.status for d in await previews.deployments()] == ["completed", "completed"]
    # The default branch switches to Worker Previews: the next push removes the per-PR Worker first.
    from tests.previews.conftest import BASE_SHA, REPOSITORY, config

    previews.sim.set_file(REPOSITORY, BASE_SHA, ".github/flareship.yml", config("previews"))
    sha = await previews.pushed(7)
    record = await previews.record()
    assert (record.state, record.mode, record.script_name) == ("active", "previews", "shop-staging")
    assert ("0123456789abcdef0123456789abcdef", "shop-staging-pr-7") not in previews.cloudflare_sim.sim.scripts
    assert sha[:7] in previews.main_module()
    [latest] = [d for d in await previews.deployments() if d.sha == sha]
    assert latest.status == "completed"


async def test_closed_while_its_preview_deploys(previews):
    previews.open_pr(7)
    await previews.opened(7)
    previews.cloudflare_sim.sim.set_latency(0.15)
    sha = await previews.pushed(7, settle=False)
    await previews.closed(7, settle=False)
    await previews.settle()
    previews.cloudflare_sim.sim.set_latency(0)
    assert {d.sha: d.status for d in await previews.deployments()}[sha] in ("cancelled", "completed")
    assert (await previews.record()).state == "removed"
    assert not previews.on_cloudflare(7)
    assert all(previews.states(d)[-1] == "inactive" for d in previews.gh_deployments())


@pytest.mark.parametrize("previews_mode", ["previews"])
async def test_previews_mode_needs_the_from_environments_worker(previews, previews_mode):
    del previews.cloudflare_sim.sim.scripts[("0123456789abcdef0123456789abcdef", "shop-staging")]
    previews.open_pr(7)
    await previews.opened(7)
    [deployment] = await previews.deployments()
    assert deployment.status == "failed" and deployment.error.code == "DEPLOY_002"
    assert "deploy staging once before its previews" in deployment.error.message
    assert "DEPLOY_002" in previews.comment_body()
