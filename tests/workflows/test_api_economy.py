"""API economy: one comment-triggered staging deploy, comment to completed check run, token cached."""

from __future__ import annotations

from tests.workflows.conftest import HEAD_SHA, INSTALLATION_ID

WRITES = ("POST", "PATCH", "PUT", "DELETE")


async def test_one_comment_deploy_costs_at_most_15_requests_and_8_writes(workflow):
    # Warm the installation token (the budget is counted with the token already cached).
    await workflow.services.github.installation_token(INSTALLATION_ID)
    workflow.services.reporter.interval = 1.0  # the production coalescing interval
    before = len(workflow.sim.requests)

    await workflow.comment("/deploy staging")

    requests = workflow.sim.requests[before:]
    lines = [f"{r.method} {r.path} -> {r.status}" for r in requests]
    writes = [r for r in requests if r.method in WRITES]
    print(f"\nGitHub requests for one comment-triggered staging deploy: {len(requests)} "
          f"({len(writes)} writes)\n  " + "\n  ".join(lines))
    assert not [r for r in requests if r.path.endswith("/access_tokens")], "token was cached"
    run = workflow.check_runs(HEAD_SHA, "staging")[0]
    assert run["conclusion"] == "success"
    assert len(requests) <= 15, lines
    assert len(writes) <= 8, lines
