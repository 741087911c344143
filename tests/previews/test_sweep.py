"""The sweep: a PR closed while Flareship was down, a removal that failed half-way, a preview Cloudflare lost."""

from __future__ import annotations

import asyncio

import pytest

from bot.sim.github.state import Fault
from tests.previews.conftest import REPOSITORY


async def _until(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
def fast_sweep(previews):
    previews.settings["preview_sweep_seconds"] = 0.2
    return previews


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_pr_closed_while_flareship_was_stopped_is_cleaned_up_at_start(fast_sweep, previews_mode):
    previews = fast_sweep
    previews.open_pr(7)
    await previews.opened(7)
    previews.open_pr(8)
    await previews.opened(8)
    assert previews.on_cloudflare(7) and previews.on_cloudflare(8)
    await previews.stop()
    previews.sim.close_pull_request(REPOSITORY, 7)  # its delivery is never handled: Flareship is down
    await previews.start()

    async def removed() -> bool:
        record = await previews.record(7)
        return record.state == "removed"
    await _until(removed)
    await previews.settle()
    assert not previews.on_cloudflare(7) and previews.on_cloudflare(8)  # only the closed PR's preview
    assert all(previews.states(d)[-1] == "inactive" for d in previews.gh_deployments(7))
    assert all(previews.states(d)[-1] == "success" for d in previews.gh_deployments(8))
    assert "🗑️ removed" in previews.comment_body(7)
    assert (await previews.record(8)).state == "active"


async def test_crash_between_cloudflare_delete_and_github_statuses_ends_consistent(fast_sweep):
    previews = fast_sweep
    previews.open_pr(7)
    await previews.opened(7)
    await previews.pushed(7)
    assert len(previews.gh_deployments()) == 2
    # GitHub refuses the statuses: the preview is gone on Cloudflare, its deployments still show active.
    previews.sim.faults.append(Fault("POST", "/repos/acme/shop/deployments/*/statuses", status=500, times=None))
    await previews.closed(7)
    record = await previews.record()
    assert record.state == "removing" and record.attempts >= 1 and "GitHubBroken" in (record.last_error or "")
    assert not previews.on_cloudflare(7)
    assert any(previews.states(d)[-1] != "inactive" for d in previews.gh_deployments())
    response = await previews.client.get("/health/deployment")
    health = (await response.json())["data"]["previews"]
    assert health["pendingRemovals"] == 1
    [failing] = health["failingRemovals"]
    assert failing["pullRequest"] == 7 and failing["attempts"] >= 1 and failing["nextRetry"]
    # Flareship stops (the crash) and comes back once GitHub does: the sweep finishes the removal.
    await previews.stop()
    previews.sim.faults.clear()
    await previews.start()

    async def removed() -> bool:
        return (await previews.record()).state == "removed"
    await _until(removed)
    assert all(previews.states(d)[-1] == "inactive" for d in previews.gh_deployments())
    assert not previews.on_cloudflare(7)
    health = (await (await previews.client.get("/health/deployment")).json())["data"]["previews"]
    assert health == {**health, "pendingRemovals": 0, "failingRemovals": []}


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_process_stopping_right_after_the_cloudflare_delete(fast_sweep, previews_mode):
    """The crash exactly between the two: the row says `removing`, Cloudflare has nothing, GitHub still shows it live."""
    previews = fast_sweep
    previews.open_pr(7)
    await previews.opened(7)
    cleaner = previews.services.previews
    record = await cleaner.store.begin_removal(REPOSITORY, 7)
    await cleaner.delete_on_cloudflare(record)  # ... and the process dies here
    await previews.stop()
    assert not previews.on_cloudflare(7)
    assert [previews.states(d)[-1] for d in previews.gh_deployments()] == ["success"]
    await previews.start()

    async def removed() -> bool:
        return (await previews.record()).state == "removed"
    await _until(removed)
    assert [previews.states(d)[-1] for d in previews.gh_deployments()] == ["inactive"]
    assert "🗑️ removed" in previews.comment_body()
