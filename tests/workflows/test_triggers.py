"""Labels, merges, check-run buttons and re-runs: the same checks, then the engine."""

from __future__ import annotations

from tests.workflows.conftest import BASE_SHA, FILES, HEAD_SHA, REPOSITORY

MERGE_SHA = "3e" * 20
SECOND_SHA = "5ec0" + "0" * 36


def notice(workflow, number: int = 7) -> str:
    [comment] = workflow.flareship_comments(number)
    return comment.body


async def test_label_deploys_the_head_and_is_removed(workflow):
    workflow.sim.repo(REPOSITORY).pulls[7].labels.append("deploy:staging")
    await workflow.post("pull_request", workflow.label_payload("deploy:staging", user="lead"))
    await workflow.settle()
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"
    removed = workflow.sim.calls("DELETE", "/repos/acme/widgets/issues/7/labels/*")
    assert len(removed) == 1 and removed[0].path.endswith("/labels/deploy:staging")
    assert "deploy:staging" not in workflow.sim.repo(REPOSITORY).pulls[7].labels


async def test_label_by_a_reader_is_refused_and_removed(workflow):
    await workflow.post("pull_request", workflow.label_payload("deploy:production", user="reader"))
    await workflow.settle()
    assert workflow.check_runs() == []
    assert "@reader has read access" in notice(workflow)
    assert len(workflow.sim.calls("DELETE", "/repos/acme/widgets/issues/7/labels/*")) == 1


async def test_other_labels_are_ignored(workflow):
    before = len(workflow.sim.requests)
    payload = workflow.label_payload("bug")
    await workflow.post("pull_request", payload)
    await workflow.settle()
    assert workflow.sim.requests[before:] == []


async def test_merge_deploys_auto_deploy_environments_once(workflow):
    workflow.sim.add_commit(REPOSITORY, MERGE_SHA, parent=BASE_SHA, branch="main", files=FILES)
    payload = workflow.merge_payload(MERGE_SHA)
    await workflow.post("pull_request", payload)
    await workflow.settle()
    [run] = workflow.check_runs(MERGE_SHA)
    assert run["name"] == "Deploy to staging" and run["conclusion"] == "success"
    assert workflow.deployments("production") == []
    # The same merge announced again (a second delivery): the SHA is live, nothing redeploys.
    await workflow.post("pull_request", payload)
    await workflow.settle()
    assert len(workflow.deployments("staging")) == 1
    live = await workflow.services.engine.live_release(REPOSITORY, "staging")
    assert live.sha == MERGE_SHA


async def test_unmerged_close_deploys_nothing(workflow):
    payload = workflow.merge_payload(MERGE_SHA)
    payload["pull_request"]["merged"] = False
    before = len(workflow.sim.requests)
    await workflow.post("pull_request", payload)
    await workflow.settle()
    assert workflow.sim.requests[before:] == []


async def staging_run(workflow) -> dict:
    await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"
    return run


async def test_promote_button_rechecks_the_clicker(workflow):
    run = await staging_run(workflow)
    workflow.sim.add_review(REPOSITORY, 7, user="carol", state="APPROVED", commit_id=HEAD_SHA)
    workflow.sim.add_status(REPOSITORY, HEAD_SHA, context="ci/tests", state="success")

    await workflow.post("check_run", workflow.check_run_payload(run["id"], identifier="promote", user="dev"))
    await workflow.settle()
    assert workflow.check_runs(HEAD_SHA, "production") == []
    assert "@dev has write access" in notice(workflow)

    await workflow.post("check_run", workflow.check_run_payload(run["id"], identifier="promote", user="lead"))
    await workflow.settle()
    [prod] = workflow.check_runs(HEAD_SHA, "production")
    assert prod["conclusion"] == "success"
    assert (await workflow.services.engine.live_release(REPOSITORY, "production")).sha == HEAD_SHA


async def test_rollback_button_restores_the_previous_release(workflow):
    first = await staging_run(workflow)
    workflow.sim.repo(REPOSITORY).pulls[7].head_sha = SECOND_SHA
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, ".github/flareship.yml", FILES[".github/flareship.yml"])
    workflow.sim.set_file(REPOSITORY, SECOND_SHA, "dist/index.js", FILES["dist/index.js"] + "// v2\n")
    await workflow.comment("/deploy staging")
    [second] = workflow.check_runs(SECOND_SHA, "staging")
    assert second["conclusion"] == "success" and first["id"] != second["id"]

    await workflow.post("check_run", workflow.check_run_payload(second["id"], identifier="rollback", user="reader"))
    await workflow.settle()
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == SECOND_SHA

    await workflow.post("check_run", workflow.check_run_payload(second["id"], identifier="rollback", user="dev"))
    await workflow.settle()
    assert (await workflow.services.engine.live_release(REPOSITORY, "staging")).sha == HEAD_SHA
    [second] = workflow.check_runs(SECOND_SHA, "staging")  # the rollback reported on the run it undid
    assert "rolled back" in second["output"]["title"]
    states = {d["ref"]: workflow.deployment_states(d["id"]) for d in workflow.deployments("staging")}
    assert states[SECOND_SHA][-1] in ("success", "inactive")
    rollback_deps = [d for d in workflow.deployments("staging") if d["payload"].get("kind") == "rollback"]
    assert len(rollback_deps) == 1 and rollback_deps[0]["ref"] == HEAD_SHA
    assert workflow.deployment_states(rollback_deps[0]["id"]) == ["in_progress", "success"]
    assert "(rollback)" in notice(workflow)


async def test_retry_button_resumes_a_failed_deployment(workflow):
    workflow.cloudflare_sim.sim.inject_fault("PUT", "*/workers/scripts/widgets-staging", status=400, times=1)
    payload = await workflow.comment("/deploy staging")
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "failure", run["output"]
    assert [a["identifier"] for a in run["actions"]] == ["retry"]
    assert workflow.reactions(payload["comment"]["id"]) == ["eyes", "confused"]
    assert "❌ failed" in notice(workflow)

    await workflow.post("check_run", workflow.check_run_payload(run["id"], identifier="retry", user="dev"))
    await workflow.settle()
    [run] = workflow.check_runs(HEAD_SHA, "staging")
    assert run["conclusion"] == "success"
    assert "✅ live" in notice(workflow)


async def test_rerequested_redeploys_the_same_sha_on_the_same_check_run(workflow):
    run = await staging_run(workflow)
    first_deployment = run["external_id"]
    await workflow.post("check_run", workflow.check_run_payload(run["id"], action="rerequested", user="dev"))
    await workflow.settle()
    runs = workflow.check_runs(HEAD_SHA, "staging")
    assert len(runs) == 1 and runs[0]["conclusion"] == "success"
    assert runs[0]["external_id"] != first_deployment
    assert len(workflow.deployments("staging")) == 2


async def test_buttons_on_other_apps_runs_are_ignored(workflow):
    run = await staging_run(workflow)
    payload = workflow.check_run_payload(run["id"], identifier="rollback", user="lead")
    payload["check_run"]["app"]["id"] = 999
    before = len(workflow.sim.requests)
    await workflow.post("check_run", payload)
    await workflow.settle()
    assert workflow.sim.requests[before:] == []
