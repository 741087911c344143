"""API economy: one comment-triggered staging deploy, comment to completed check run, token cached."""

from __future__ import annotations

import time

from tests.workflows.conftest import HEAD_SHA, INSTALLATION_ID

WRITES = ("POST", "PATCH", "PUT", "DELETE")


async def test_one_comment_deploy_costs_at_most_15_requests_and_8_writes(workflow):
    # Warm the installation token (the budget is counted with the token already cached).
    await workflow.services.github.installation_token(INSTALLATION_ID)
    workflow.services.reporter.interval = 1.0  # the production coalescing interval
    before = len(workflow.sim.requests)

    started = time.monotonic()
    await workflow.comment("/deploy staging")
    elapsed = time.monotonic() - started

    requests = workflow.sim.requests[before:]
    lines = [f"{r.method} {r.path} -> {r.status}" for r in requests]
    writes = [r for r in requests if r.method in WRITES]
    print(f"\nGitHub requests for one comment-triggered staging deploy: {len(requests)} "
          f"({len(writes)} writes)\n  " + "\n  ".join(lines))
    assert not [r for r in requests if r.path.endswith("/access_tokens")], "token was cached"
    run = workflow.check_runs(HEAD_SHA, "staging")[0]
    assert run["conclusion"] == "success"
    # A deploy that outlasts the coalescing interval legitimately adds progress PATCHes of the
    # check run (at most one per interval); on a quiet machine the simulated deploy takes well
    # under a second and there are none. Everything else is the fixed cost being measured.
    run_patches = [r for r in writes if r.method == "PATCH" and "/check-runs/" in r.path]
    progress = len(run_patches) - 1
    assert progress <= int(elapsed / workflow.services.reporter.interval), lines
    assert len(requests) - progress <= 15, lines
    assert len(writes) - progress <= 8, lines


async def test_repeated_config_and_pull_request_reads_are_conditional(workflow):
    workflow.services.reporter.interval = 1.0  # the production coalescing interval
    await workflow.comment("/deploy staging")
    before = len(workflow.sim.requests)
    started = time.monotonic()
    await workflow.comment("/deploy staging")
    elapsed = time.monotonic() - started
    again = workflow.sim.requests[before:]
    config = [r for r in again if r.path.endswith("/contents/.github/flareship.yml")]
    pull = [r for r in again if r.path == "/repos/acme/widgets/pulls/7"]
    assert [r.status for r in config] == [304] and [r.status for r in pull] == [304]
    assert all(r.headers.get("if-none-match") for r in config + pull)
    writes = [r for r in again if r.method in WRITES]
    print(f"\nsecond deploy of the same PR: {len(again)} requests ({len(writes)} writes)\n  "
          + "\n  ".join(f"{r.method} {r.path} -> {r.status}" for r in again))
    # As above: progress PATCHes of the check run (one per interval) when the deploy outlasts it.
    progress = max(0, len([r for r in writes if r.method == "PATCH" and "/check-runs/" in r.path]) - 2)
    assert progress <= int(elapsed / workflow.services.reporter.interval)
    assert len(again) - progress <= 15 and len(writes) - progress <= 8
