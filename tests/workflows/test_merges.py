"""Merges into the default branch: the person who merged is checked like a commenter."""

from __future__ import annotations

from tests.workflows.conftest import BASE_SHA, FILES, REPOSITORY

MERGE_SHA = "4e" * 20


def notice(workflow, number: int = 7) -> str:
    [comment] = workflow.flareship_comments(number)
    return comment.body


async def test_a_merge_by_someone_without_the_permission_deploys_nothing_and_says_why(workflow):
    workflow.sim.add_commit(REPOSITORY, MERGE_SHA, parent=BASE_SHA, branch="main", files=FILES)
    payload = workflow.merge_payload(MERGE_SHA, user="reader")
    await workflow.post("pull_request", payload)
    await workflow.settle()

    assert workflow.check_runs(MERGE_SHA) == []
    assert workflow.deployments() == []
    assert await workflow.services.engine.list(repository=REPOSITORY) == []
    text = notice(workflow)
    assert "The merge was not deployed to **staging**" in text
    assert "@reader has read access" in text and "needs write" in text

    # Announced again: the refusal stands, nothing is asked of the engine or written twice.
    writes = len(workflow.sim.writes)
    await workflow.post("pull_request", payload)
    await workflow.settle()
    assert len(workflow.sim.writes) == writes
    assert await workflow.services.engine.list(repository=REPOSITORY) == []


async def test_a_merge_checks_merged_by_not_the_sender(workflow):
    workflow.sim.add_commit(REPOSITORY, MERGE_SHA, parent=BASE_SHA, branch="main", files=FILES)
    payload = workflow.merge_payload(MERGE_SHA, user="reader")
    payload["pull_request"]["merged_by"] = {"login": "dev", "id": 5, "type": "User"}
    await workflow.post("pull_request", payload)
    await workflow.settle()

    [run] = workflow.check_runs(MERGE_SHA, "staging")
    assert run["conclusion"] == "success", run["output"]
    [deployment] = await workflow.services.engine.list(repository=REPOSITORY)
    assert deployment.actor == "dev" and deployment.trigger == "merge"


async def test_allowed_users_let_a_merger_without_the_role_deploy(workflow):
    config = FILES[".github/flareship.yml"].replace(
        "    auto_deploy: true\n", "    auto_deploy: true\n    required_permission: admin\n    allowed_users: [dev]\n")
    files = {**FILES, ".github/flareship.yml": config}
    workflow.sim.add_commit(REPOSITORY, "5a" * 20, parent=BASE_SHA, branch="main", files=files)
    workflow.sim.add_commit(REPOSITORY, MERGE_SHA, parent="5a" * 20, branch="main", files=files)

    await workflow.post("pull_request", workflow.merge_payload(MERGE_SHA, user="lead"))
    await workflow.settle()
    assert workflow.check_runs(MERGE_SHA) == []
    assert "@lead has maintain access" in notice(workflow) and "needs admin" in notice(workflow)

    second = "6b" * 20
    workflow.sim.add_commit(REPOSITORY, second, parent=MERGE_SHA, branch="main", files=files)
    await workflow.post("pull_request", workflow.merge_payload(second, user="dev"))
    await workflow.settle()
    [run] = workflow.check_runs(second, "staging")
    assert run["conclusion"] == "success", run["output"]
