"""The demo's story through `bot.pr_story` (the integrator's recipe): webhooks sent by the simulated
GitHub itself to the running app, narrated from the simulator's state."""

from __future__ import annotations

from bot.pr_story import PullRequestStory
from tests.plugins.webhooks import TEST_WEBHOOK_SECRET
from tests.workflows.conftest import FILES, HEAD_SHA, INSTALLATION_ID, REPOSITORY

SECOND_SHA = "5ec0" + "0" * 36


async def test_the_demo_story(workflow):
    lines: list[str] = []
    story = PullRequestStory(workflow.github_sim, str(workflow.client.make_url("/webhooks/github")),
                             TEST_WEBHOOK_SECRET, REPOSITORY, installation_id=INSTALLATION_ID, out=lines.append)
    sim = workflow.sim

    deploy = await story.comment(7, "/deploy staging", user="dev")
    staging = await story.watch_check_run(HEAD_SHA, "staging")
    assert staging["conclusion"] == "success"
    assert await story.wait_reactions(deploy, 2) == ["eyes", "rocket"]

    refused = await story.comment(7, "/deploy production", user="reader")
    assert await story.wait_reactions(refused, 2) == ["eyes", "confused"]
    await workflow.settle()
    assert "@reader has read access" in story.pr_comment(7)

    sim.add_review(REPOSITORY, 7, user="carol", state="APPROVED", commit_id=HEAD_SHA)
    sim.add_status(REPOSITORY, HEAD_SHA, context="ci/tests", state="success")
    await story.click(staging["id"], "promote", user="lead")
    production = await story.watch_check_run(HEAD_SHA, "production")
    assert production["conclusion"] == "success"

    # A second commit goes to staging, then /rollback staging brings the first one back.
    sim.repo(REPOSITORY).pulls[7].head_sha = SECOND_SHA
    for path, content in FILES.items():
        sim.set_file(REPOSITORY, SECOND_SHA, path, content + ("// v2\n" if path.endswith(".js") else ""))
    await story.comment(7, "/deploy staging", user="dev")
    await story.watch_check_run(SECOND_SHA, "staging")
    rollback = await story.comment(7, "/rollback staging", user="dev")
    await story.wait_reactions(rollback, 2)
    await workflow.settle()
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == HEAD_SHA

    text = "\n".join(lines)
    assert "💬 @dev on #7: /deploy staging" in text
    assert "GitHub deployment #" in text and "in_progress -> success" in text
    assert "reactions: 👀 🚀" in text and "reactions: 👀 😕" in text
    assert "buttons: Roll back, Promote to production" in text or "buttons: Roll back, Promote" in text
