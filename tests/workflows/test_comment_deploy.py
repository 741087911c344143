"""A /deploy comment end to end: signed webhook in, check run + GitHub deployment + PR comment out."""

from __future__ import annotations

from tests.workflows.conftest import HEAD_SHA


async def test_deploy_staging_happy_path(workflow):
    payload = await workflow.comment("/deploy staging")
    comment_id = payload["comment"]["id"]

    assert workflow.reactions(comment_id) == ["eyes", "rocket"]
    runs = workflow.check_runs(HEAD_SHA, "staging")
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "completed" and run["conclusion"] == "success", run["output"]
    assert run["external_id"].startswith("dep_")
    # Details opens the live page without an API token: the link is signed for this deployment.
    page_path = f"/deployments/{run['external_id']}?token="
    assert run["details_url"].startswith(f"http://127.0.0.1:8000{page_path}")
    page = await workflow.client.get(run["details_url"].removeprefix("http://127.0.0.1:8000"))
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "to staging: completed" in html and HEAD_SHA[:12] in html
    assert run["output"]["title"] == "Live on staging"
    assert run["output"]["summary"].count("✅ completed") == 6  # container + DOs skipped for a Worker-only app
    assert [a["identifier"] for a in run["actions"]] == ["rollback", "promote"]

    deployments = workflow.deployments("staging")
    assert len(deployments) == 1
    gh_dep = deployments[0]
    assert gh_dep["auto_merge"] is False if "auto_merge" in gh_dep else True
    assert gh_dep["payload"]["flareship_deployment_id"] == run["external_id"]
    assert workflow.deployment_states(gh_dep["id"]) == ["in_progress", "success"]

    comments = workflow.flareship_comments()
    assert len(comments) == 1
    body = comments[0].body
    assert "| **staging** |" in body and "✅ live" in body and "`c0ffee0`" in body and "@dev" in body
