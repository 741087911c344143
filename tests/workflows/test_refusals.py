"""Refusals: each one says why (😕 + the PR comment) and changes nothing on GitHub or Cloudflare."""

from __future__ import annotations

from tests.workflows.conftest import HEAD_SHA, REPOSITORY


def notice(workflow, number: int = 7) -> str:
    comments = workflow.flareship_comments(number)
    assert len(comments) == 1, [c.body for c in comments]
    return comments[0].body


def nothing_deployed(workflow, env: str | None = None) -> None:
    assert workflow.check_runs(env=env) == []
    assert workflow.deployments(env) == []


async def make_production_ready(workflow, *, approve=True, checks="success", staging=True) -> None:
    if approve:
        workflow.sim.add_review(REPOSITORY, 7, user="carol", state="APPROVED", commit_id=HEAD_SHA)
    if checks:
        workflow.sim.add_status(REPOSITORY, HEAD_SHA, context="ci/tests", state=checks)
    if staging:
        await workflow.comment("/deploy staging")
        assert workflow.check_runs(HEAD_SHA, "staging")[0]["conclusion"] == "success"


async def test_read_only_user_cannot_deploy_production(workflow):
    payload = await workflow.comment("/deploy production", user="reader")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "confused"]
    body = notice(workflow)
    assert "@reader has read access" in body and "needs maintain" in body
    nothing_deployed(workflow)


async def test_writer_cannot_deploy_production_but_may_deploy_staging(workflow):
    await workflow.comment("/deploy production", user="dev")
    assert "@dev has write access" in notice(workflow)
    nothing_deployed(workflow, "production")


async def test_non_collaborator_is_refused(workflow):
    await workflow.comment("/deploy staging", user="stranger")
    assert "@stranger has no access" in notice(workflow)
    nothing_deployed(workflow)


async def test_fork_pull_request_is_refused(workflow):
    workflow.add_pull_request(8, head_sha="f0" * 20, fork=True, user="outsider")
    payload = await workflow.comment("/deploy staging", user="dev", number=8)
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "confused"]
    assert "comes from a fork" in notice(workflow, 8)
    nothing_deployed(workflow)


async def test_missing_approval_is_refused(workflow):
    await make_production_ready(workflow, approve=False)
    await workflow.comment("/deploy production", user="lead")
    assert "needs an approving review on the head commit `c0ffee0`" in notice(workflow)
    nothing_deployed(workflow, "production")


async def test_red_checks_are_refused(workflow):
    await make_production_ready(workflow, checks="failure")
    await workflow.comment("/deploy production", user="lead")
    assert "needs green checks on `c0ffee0`; failing: ci/tests" in notice(workflow)
    nothing_deployed(workflow, "production")


async def test_after_staging_unmet_is_refused(workflow):
    await make_production_ready(workflow, staging=False)
    await workflow.comment("/deploy production", user="lead")
    assert "only takes what is live on **staging** first" in notice(workflow)
    nothing_deployed(workflow, "production")


async def test_production_with_every_gate_green_deploys(workflow):
    await make_production_ready(workflow)
    payload = await workflow.comment("/deploy production", user="lead")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "rocket"]
    run = workflow.check_runs(HEAD_SHA, "production")[0]
    assert run["conclusion"] == "success"
    [gh_dep] = workflow.deployments("production")
    assert gh_dep["production_environment"] is True
    assert workflow.deployment_states(gh_dep["id"]) == ["in_progress", "success"]
    body = notice(workflow)
    assert "| **production** |" in body and "| **staging** |" in body


async def test_locked_environment_refuses_with_who_when_why(workflow):
    lock = await workflow.comment("/lock staging release freeze", user="lead")
    assert workflow.reactions(lock["comment"]["id"]) == ["eyes", "rocket"]
    assert "🔒 **staging** is locked by @lead: release freeze" in notice(workflow)

    payload = await workflow.comment("/deploy staging", user="dev")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "confused"]
    body = notice(workflow)
    assert "**staging** is locked by @lead since" in body and "release freeze" in body
    nothing_deployed(workflow)

    refused_unlock = await workflow.comment("/unlock staging", user="reader")
    assert workflow.reactions(refused_unlock["comment"]["id"]) == ["eyes", "confused"]
    await workflow.comment("/unlock staging", user="lead")
    assert "unlocked by @lead" in notice(workflow)
    await workflow.comment("/deploy staging", user="dev")
    assert workflow.check_runs(HEAD_SHA, "staging")[0]["conclusion"] == "success"


async def test_unknown_environment_and_bad_arguments_get_usage(workflow):
    payload = await workflow.comment("/deploy qa")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "confused"]
    body = notice(workflow)
    assert "unknown environment `qa`" in body and "/rollback ENV [to VERSION]" in body
    nothing_deployed(workflow)


async def test_unknown_command_gets_usage_without_eyes(workflow):
    payload = await workflow.comment("/deploi staging")
    assert workflow.reactions(payload["comment"]["id"]) == []
    assert "Unknown command `/deploi`" in notice(workflow)


async def test_help_gets_eyes_and_usage(workflow):
    payload = await workflow.comment("/help")
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes"]
    assert "/deploy [ENV] [--dry-run]" in notice(workflow)


async def test_ordinary_edited_and_bot_comments_are_ignored(workflow):
    before = len(workflow.sim.requests)
    await workflow.comment("Looks good to me! /deploy staging later")
    await workflow.comment("/deploy staging", action="edited")
    await workflow.comment("/deploy staging", user="flareship[bot]", bot=True)
    assert workflow.sim.requests[before:] == []


async def test_comments_on_plain_issues_are_ignored(workflow):
    payload = workflow.comment_payload("/deploy staging")
    del payload["issue"]["pull_request"]
    before = len(workflow.sim.requests)
    await workflow.post("issue_comment", payload)
    await workflow.settle()
    assert workflow.sim.requests[before:] == []


async def test_missing_config_on_default_branch_is_explained(workflow):
    repo = workflow.sim.repo(REPOSITORY)
    repo.files[repo.branches["main"]].pop(".github/flareship.yml")
    await workflow.comment("/deploy staging")
    assert "There is no `.github/flareship.yml` on `main`" in notice(workflow)
    nothing_deployed(workflow)


async def test_policy_comes_from_the_default_branch_not_the_pull_request(workflow):
    weakened = "app: {name: widgets, main: dist/index.js}\nenvironments:\n  staging: {}\n  production:\n" \
               "    required_permission: write\nallow_forks: true\n"
    workflow.sim.set_file(REPOSITORY, HEAD_SHA, ".github/flareship.yml", weakened)
    await workflow.comment("/deploy production", user="dev")
    assert "`/deploy` on **production** needs maintain" in notice(workflow)
    nothing_deployed(workflow)
