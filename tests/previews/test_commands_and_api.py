"""`/status preview`, `/cancel preview`, `GET /deployments?environment=preview` and the Details page."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


async def test_status_and_cancel_preview(previews):
    previews.open_pr(7)
    await previews.comment("/status preview")
    assert "**preview**: no preview has been deployed for this pull request" in previews.comment_body()
    await previews.opened(7)
    record = await previews.record()
    await previews.comment("/status preview")
    assert f"`pr-7` (script mode) at {record.url}" in previews.comment_body()
    await previews.comment("/cancel preview")
    assert "has no queued or running deployment to cancel" in previews.comment_body()
    # A push while Cloudflare is slow, then /cancel preview: the deployment stops between steps.
    previews.cloudflare_sim.sim.set_latency(0.2)
    sha = await previews.pushed(7, settle=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not [d for d in await previews.deployments() if d.sha == sha and d.status == "in_progress"]:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    await previews.comment("/cancel preview")
    previews.cloudflare_sim.sim.set_latency(0)
    await previews.settle()
    latest = {d.sha: d for d in await previews.deployments()}[sha]
    assert latest.status == "cancelled"
    assert "of the **preview** (it stops between steps)" in previews.comment_body()
    await previews.comment("/rollback preview")
    assert "a preview takes `/deploy preview`, `/status preview` and `/cancel preview`" in previews.comment_body()
    await previews.comment("/deploy previews")
    assert "unknown environment `previews`" in previews.comment_body()


async def test_api_lists_preview_deployments_and_details_open(previews):
    previews.open_pr(7)
    await previews.opened(7)
    previews.open_pr(8)
    await previews.opened(8)
    await previews.comment("/deploy staging")
    _, token = await previews.services.api_tokens.create(name="t", scopes=["read"])
    response = await previews.client.get("/deployments?environment=preview",
                                         headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    listed = (await response.json())["data"]["deployments"]
    assert sorted(d["environment"] for d in listed) == ["preview/pr-7", "preview/pr-8"]
    for item in listed:
        number = int(item["environment"].rsplit("-", 1)[1])
        assert item["urls"][item["environment"]] == (await previews.record(number)).url
    staging = await previews.client.get("/deployments?environment=staging",
                                        headers={"Authorization": f"Bearer {token}"})
    assert [d["environment"] for d in (await staging.json())["data"]["deployments"]] == ["staging"]
    [run] = previews.check_runs()[:1]
    details = urlsplit(run["details_url"])
    page = await previews.client.get(f"{details.path}?{details.query}")
    assert page.status == 200
    html = await page.text()
    assert "preview/pr-" in html and run["external_id"] in html
