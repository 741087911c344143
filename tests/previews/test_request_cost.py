"""What one preview push costs: GitHub and Cloudflare requests, from the synchronize delivery to the live preview.

The numbers are the README's ("Previews"). Counted with the installation token cached and the
preview already existing (the steady state of a PR under review), at the production reporter
interval; a deploy that outlasts it may add progress PATCHes of the check run, which are left
out of the fixed cost as in tests/workflows/test_api_economy.py.
"""

from __future__ import annotations

import time

import pytest

from tests.previews.conftest import INSTALLATION_ID

WRITES = ("POST", "PATCH", "PUT", "DELETE")
#: (GitHub requests, GitHub writes, Cloudflare requests, Cloudflare writes) per mode, at most.
BUDGET = {"previews": (10, 6, 9, 1), "script": (10, 6, 14, 1)}


@pytest.mark.parametrize("previews_mode", ["previews", "script"])
async def test_one_preview_push_costs(previews, previews_mode):
    previews.open_pr(7)
    await previews.opened(7)
    await previews.services.github.installation_token(INSTALLATION_ID)
    previews.services.reporter.interval = 1.0
    github_before, cloudflare_before = len(previews.sim.requests), len(previews.cloudflare_sim.sim.requests)
    started = time.monotonic()
    await previews.pushed(7)
    elapsed = time.monotonic() - started
    github = previews.sim.requests[github_before:]
    cloudflare = previews.cloudflare_sim.sim.requests[cloudflare_before:]
    gh_writes = [r for r in github if r.method in WRITES]
    cf_writes = [r for r in cloudflare if r[0] in WRITES]
    progress = max(0, len([r for r in gh_writes if r.method == "PATCH" and "/check-runs/" in r.path]) - 1)
    lines = [f"GitHub {r.method} {r.path} -> {r.status}" for r in github] + \
        [f"Cloudflare {m} {p} -> {s}" for m, p, s in cloudflare]
    print(f"\none preview push ({previews_mode} mode): GitHub {len(github) - progress} requests "
          f"({len(gh_writes) - progress} writes), Cloudflare {len(cloudflare)} requests ({len(cf_writes)} writes)\n  "
          + "\n  ".join(lines))
    assert [d.status for d in await previews.deployments()] == ["completed", "completed"]
    assert progress <= int(elapsed / previews.services.reporter.interval), lines
    assert not [r for r in github if r.path.endswith("/access_tokens")]
    most = BUDGET[previews_mode]
    assert len(github) - progress <= most[0] and len(gh_writes) - progress <= most[1], lines
    assert len(cloudflare) <= most[2] and len(cf_writes) <= most[3], lines
