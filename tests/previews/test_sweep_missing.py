"""The sweep finds a recorded preview gone on Cloudflare: marked, and the next push redeploys it."""

from __future__ import annotations

import pytest

from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID
from tests.previews.conftest import config


@pytest.fixture
def previews_config(previews_mode: str) -> str:
    return config(previews_mode, extra="  trigger: comment\n")


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_preview_lost_on_cloudflare_is_marked_and_redeployed_by_the_next_push(previews, previews_mode):
    previews.open_pr(7)
    await previews.opened(7)
    assert await previews.deployments() == []  # trigger comment: opening deploys nothing
    await previews.comment("/deploy preview")
    assert previews.on_cloudflare(7)
    await previews.pushed(7)
    assert len(await previews.deployments()) == 1  # nor does a push
    cf = previews.cloudflare_sim.sim
    if previews_mode == "previews":
        preview = cf.previews.find(CF_ACCOUNT_ID, "shop-staging", "pr-7")
        cf.previews.delete_preview(cf.accounts[CF_ACCOUNT_ID], "shop-staging", preview.id)
    else:
        del cf.scripts[(CF_ACCOUNT_ID, "shop-staging-pr-7")]
    result = await previews.services.preview_sweep.sweep_once()
    assert result.missing == ["acme/shop#7"] and (await previews.record()).missing
    await previews.pushed(7)
    assert previews.on_cloudflare(7)
    assert [d.status for d in await previews.deployments()] == ["completed", "completed"]
    assert not (await previews.record()).missing
