"""Who gets a preview: forks, authors below the `from` environment's permission, and `previews.max`."""

from __future__ import annotations

import pytest

from tests.previews.conftest import config


@pytest.fixture
def previews_config() -> str:
    return config("script", extra="  max: 1\n")


async def test_fork_pull_request_gets_no_preview(previews):
    previews.sim.add_collaborator("acme/shop", "forker", "write")
    previews.open_pr(7, user="forker", fork=True)
    await previews.opened(7)
    assert await previews.deployments() == []
    assert await previews.record() is None and not previews.on_cloudflare(7)
    assert "No preview for a pull request from a fork" in previews.comment_body()
    assert previews.check_runs() == [] and previews.gh_deployments() == []
    # A writer's command is refused the same way: the fork's code would run with the bindings.
    await previews.comment("/deploy preview", user="lead")
    assert await previews.deployments() == []


async def test_read_only_author_gets_no_automatic_preview_but_a_writer_can_start_it(previews):
    head = previews.open_pr(7, user="reader")
    await previews.opened(7)
    assert await previews.deployments() == []
    body = previews.comment_body()
    assert "No preview: @reader has read access" in body and "needs write" in body
    assert "`/deploy preview`" in body
    await previews.pushed(7)
    assert await previews.deployments() == []  # still not for a push of the same author
    comment_id = await previews.comment("/deploy preview", user="dev")
    [deployment] = await previews.deployments()
    assert deployment.status == "completed" and deployment.actor == "dev" and deployment.trigger == "comment"
    assert deployment.sha != head and previews.on_cloudflare(7)
    reactions = [content for content, _user, _id in previews.sim.repo("acme/shop").comments[comment_id].reactions]
    assert "eyes" in reactions and "rocket" in reactions
    # The reader's own command is refused like any deploy they may not do.
    await previews.comment("/deploy preview", user="reader")
    assert len(await previews.deployments()) == 1


async def test_max_previews_per_repository(previews):
    previews.open_pr(7)
    await previews.opened(7)
    previews.open_pr(8)
    await previews.opened(8)
    assert [d.pull_request for d in await previews.deployments(7)] == [7]
    assert await previews.deployments(8) == []
    assert "already has 1 open previews, the most `previews.max` allows (1)" in previews.comment_body(8)
    assert previews.on_cloudflare(7) and not previews.on_cloudflare(8)
    # The open preview is never evicted to make room: PR 7 keeps its preview on its next push.
    await previews.pushed(7)
    assert (await previews.record(7)).state == "active"
    # Once PR 7 closes, PR 8's next push gets one.
    await previews.closed(7)
    await previews.pushed(8)
    [deployment] = await previews.deployments(8)
    assert deployment.status == "completed" and previews.on_cloudflare(8) and not previews.on_cloudflare(7)
