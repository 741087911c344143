"""A preview serves the PR's static assets, as `wrangler preview` uploads them (both modes)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.previews.conftest import BASE_SHA, REPOSITORY, WORKER

WRANGLER = {"name": "shop", "assets": {"directory": "public", "not_found_handling": "404-page"}}


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_preview_serves_the_prs_assets(previews, previews_mode):
    sha = previews.new_sha()
    previews.sim.add_commit(REPOSITORY, sha, parent=BASE_SHA, files={
        "dist/index.js": WORKER % sha[:7], "wrangler.json": json.dumps(WRANGLER),
        "public/index.html": f"<h1>shop {sha[:7]}</h1>", "public/404.html": "not here"})
    previews.sim.add_pull_request(REPOSITORY, 7, head_sha=sha, head_ref="feature-7", user="dev")
    await previews.opened(7)
    [deployment] = await previews.deployments()
    assert deployment.status == "completed", deployment.error
    record = await previews.record()
    async with httpx.AsyncClient() as http:
        page = await http.get(record.url.rstrip("/") + "/")
        missing = await http.get(record.url.rstrip("/") + "/nope")
    assert page.status_code == 200 and page.text == f"<h1>shop {sha[:7]}</h1>"
    assert missing.status_code == 404 and missing.text == "not here"
    logs = "\n".join(line.message for line in await previews.services.engine.logs(deployment.id))
    assert "Static assets: 2 file(s), 2 uploaded" in logs
