"""The simulated GitHub's side of per-PR previews: pull_request deliveries in GitHub's shape, a PR's
head moving and the PR closing/reopening, open-PR listings, and transient deployments going inactive."""

from __future__ import annotations

import pytest

from bot.sim.github import events
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY, seed_repo
from tests.plugins.webhooks import load_fixture
from tests.sim.github_raw import HEAD, Api

NUMBER = 7


@pytest.fixture
async def api(github_sim, github_session):
    seed_repo(github_sim, files={"README.md": "hi"})
    github_sim.sim.add_pull_request(REPOSITORY, NUMBER, head_sha=HEAD, head_ref="feature", user="dev")
    client = Api(github_session, github_sim)
    await client.login()
    return client


def assert_shape(payload: dict, fixture: dict) -> None:
    """Every key the sim sends is one GitHub sends, at the same place (and the keys handlers read are there)."""
    assert set(payload) <= set(fixture), set(payload) - set(fixture)
    pull, real = payload["pull_request"], fixture["pull_request"]
    assert set(pull) <= set(real), set(pull) - set(real)
    for side in ("head", "base"):
        assert set(pull[side]) <= set(real[side]), set(pull[side]) - set(real[side])
    for key in ("action", "number", "pull_request", "repository", "sender", "installation"):
        assert key in payload
    for key in ("state", "merged", "user", "author_association", "head", "base", "draft"):
        assert key in pull
    assert set(pull["head"]) == {"label", "ref", "sha", "user", "repo"}


async def test_opened_and_synchronize_follow_the_pr_head(api, github_sim):
    sim = github_sim.sim
    opened = events.pull_request_opened(sim, REPOSITORY, NUMBER, installation_id=INSTALLATION_ID)
    assert_shape(opened, load_fixture("pull_request.opened"))
    assert opened["action"] == "opened" and opened["sender"]["login"] == "dev"
    assert opened["pull_request"]["head"]["sha"] == HEAD and opened["pull_request"]["state"] == "open"
    assert opened["pull_request"]["author_association"] == "CONTRIBUTOR"

    before, after = sim.push_to_pull_request(REPOSITORY, NUMBER, files={"src/index.js": "export default {}"})
    assert before == HEAD and after != HEAD
    sync = events.pull_request_synchronize(sim, REPOSITORY, NUMBER, before, sender="dev",
                                           installation_id=INSTALLATION_ID)
    assert_shape(sync, load_fixture("pull_request.synchronize"))
    assert (sync["before"], sync["after"]) == (HEAD, after) and sync["pull_request"]["head"]["sha"] == after
    # the API agrees, and the new commit has the old files plus the pushed one
    status, pull = await api.request("GET", f"/repos/{REPOSITORY}/pulls/{NUMBER}")
    assert status == 200 and pull["head"]["sha"] == after
    assert set(sim.repo(REPOSITORY).files[after]) == {"README.md", "src/index.js"}
    assert sim.repo(REPOSITORY).branches["feature"] == after


async def test_close_unmerged_reopen_then_merge(api, github_sim):
    sim = github_sim.sim
    sim.close_pull_request(REPOSITORY, NUMBER)
    closed = events.pull_request_closed(sim, REPOSITORY, NUMBER, sender="dev", installation_id=INSTALLATION_ID)
    assert_shape(closed, load_fixture("pull_request.closed"))
    pull = closed["pull_request"]
    assert pull["state"] == "closed" and pull["merged"] is False and pull["merged_by"] is None
    assert pull["closed_at"] and pull["merged_at"] is None
    with pytest.raises(ValueError, match="open"):
        sim.push_to_pull_request(REPOSITORY, NUMBER)

    sim.reopen_pull_request(REPOSITORY, NUMBER)
    reopened = events.pull_request_reopened(sim, REPOSITORY, NUMBER, sender="dev", installation_id=INSTALLATION_ID)
    assert_shape(reopened, load_fixture("pull_request.opened"))
    assert reopened["action"] == "reopened" and reopened["pull_request"]["closed_at"] is None

    sim.close_pull_request(REPOSITORY, NUMBER, merged=True)
    merged = events.pull_request_closed(sim, REPOSITORY, NUMBER, sender="lead", installation_id=INSTALLATION_ID)
    assert_shape(merged, load_fixture("pull_request.closed.merged"))
    assert merged["pull_request"]["merged"] is True and merged["pull_request"]["merged_by"]["login"] == "lead"
    assert sim.repo(REPOSITORY).branches["main"] == merged["pull_request"]["merge_commit_sha"]
    with pytest.raises(ValueError, match="merged"):
        sim.reopen_pull_request(REPOSITORY, NUMBER)


async def test_list_pulls_by_state(api, github_sim):
    sim = github_sim.sim
    sim.add_pull_request(REPOSITORY, 8, head_sha="c" * 40, head_ref="other")
    sim.close_pull_request(REPOSITORY, 8)
    status, open_pulls = await api.request("GET", f"/repos/{REPOSITORY}/pulls")
    assert status == 200 and [p["number"] for p in open_pulls] == [NUMBER]
    _, closed = await api.request("GET", f"/repos/{REPOSITORY}/pulls?state=closed")
    assert [p["number"] for p in closed] == [8] and closed[0]["closed_at"]
    _, every = await api.request("GET", f"/repos/{REPOSITORY}/pulls?state=all&per_page=1")
    assert len(every) == 1
    _, by_head = await api.request("GET", f"/repos/{REPOSITORY}/pulls?state=all&head=acme:other")
    assert [p["number"] for p in by_head] == [8]
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}/pulls?state=merged")
    assert status == 422  # not in the spec's enum


async def test_transient_preview_deployments_are_stored_and_go_inactive(api, github_sim):
    environment = f"preview/pr-{NUMBER}"
    made = []
    for _ in range(2):
        status, dep = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={
            "ref": HEAD, "environment": environment, "auto_merge": False, "required_contexts": [],
            "transient_environment": True, "production_environment": False})
        assert status == 201, dep
        made.append(dep)
        status, _ = await api.request("POST", f"/repos/{REPOSITORY}/deployments/{dep['id']}/statuses", json_body={
            "state": "success", "environment_url": "https://pr-7-app.acme.workers.dev"})
        assert status == 201
    status, read = await api.request("GET", f"/repos/{REPOSITORY}/deployments/{made[0]['id']}")
    assert status == 200 and read["transient_environment"] is True and read["production_environment"] is False
    assert read["environment"] == environment
    # A transient environment's older deployment is not auto-inactivated: Flareship marks it.
    _, statuses = await api.request("GET", f"/repos/{REPOSITORY}/deployments/{made[0]['id']}/statuses")
    assert [s["state"] for s in statuses] == ["success"]
    _, listed = await api.request("GET", f"/repos/{REPOSITORY}/deployments?environment=preview/pr-{NUMBER}")
    assert {d["id"] for d in listed} == {d["id"] for d in made}

    for dep in made:
        status, st = await api.request("POST", f"/repos/{REPOSITORY}/deployments/{dep['id']}/statuses",
                                       json_body={"state": "inactive", "description": "Preview removed"})
        assert status == 201 and st["state"] == "inactive"
        _, statuses = await api.request("GET", f"/repos/{REPOSITORY}/deployments/{dep['id']}/statuses")
        assert statuses[0]["state"] == "inactive"
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}/deployments/999999")
    assert status == 404


async def test_only_an_inactive_deployment_can_be_deleted(api, github_sim):
    ids = []
    for _ in range(2):
        _, dep = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={
            "ref": HEAD, "environment": "preview/pr-7", "auto_merge": False, "required_contexts": []})
        ids.append(dep["id"])
    status, _ = await api.request("DELETE", f"/repos/{REPOSITORY}/deployments/{ids[0]}")
    assert status == 422
    await api.request("POST", f"/repos/{REPOSITORY}/deployments/{ids[0]}/statuses", json_body={"state": "inactive"})
    status, _ = await api.request("DELETE", f"/repos/{REPOSITORY}/deployments/{ids[0]}")
    assert status == 204
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}/deployments/{ids[0]}")
    assert status == 404
