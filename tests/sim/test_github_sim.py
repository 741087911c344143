"""The simulated GitHub itself: auth, spec validation, GitHub's documented behaviours, faults, webhooks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from gidgethub import ValidationFailure
from gidgethub.sansio import Event

from bot.sim.github import start_github_sim
from bot.sim.github.state import generate_private_key
from tests.plugins.github_sim import INSTALLATION_ID, REPOSITORY, seed_repo
from tests.sim.github_raw import HEAD, Api

SHA = "a" * 40


@pytest.fixture
async def api(github_sim, github_session):
    seed_repo(github_sim, files={"README.md": "hi"})
    github_sim.sim.add_pull_request(REPOSITORY, 7, head_sha=HEAD, head_ref="feature")
    client = Api(github_session, github_sim)
    await client.login()
    return client


# -- authentication ----------------------------------------------------------------------


async def test_jwt_signed_by_another_key_is_401(api):
    status, data = await api.request("GET", "/app", auth=f"Bearer {api.jwt(key=generate_private_key())}")
    assert status == 401 and data["message"] == "A JSON web token could not be decoded"


@pytest.mark.parametrize("claims", [dict(iat_offset=-700, lifetime=600), dict(iat_offset=0, lifetime=900),
                                    dict(iss=99), dict(iat_offset=300)])
async def test_jwt_claims_are_checked(api, claims):
    status, data = await api.request("GET", "/app", auth=f"Bearer {api.jwt(**claims)}")
    assert status == 401, data
    assert data["documentation_url"]


async def test_valid_jwt_reads_the_app(api):
    status, data = await api.request("GET", "/app", auth=f"Bearer {api.jwt()}")
    assert status == 200 and data["id"] == api.server.app_id


async def test_unknown_or_expired_token_is_401(api, github_sim):
    status, data = await api.request("GET", f"/repos/{REPOSITORY}", auth="token ghs_not_issued_by_us")
    assert (status, data["message"]) == (401, "Bad credentials")
    github_sim.sim.expire_token(api.token)
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}")
    assert status == 401


async def test_installation_endpoints_need_the_jwt(api):
    status, _ = await api.request("GET", f"/app/installations/{INSTALLATION_ID}")
    assert status == 401
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}", auth=f"Bearer {api.jwt()}")
    assert status == 403
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}", auth="")
    assert status == 401


async def test_repo_outside_the_installation_is_404(api, github_sim):
    github_sim.sim.add_repo("other/secret")
    status, data = await api.request("GET", "/repos/other/secret")
    assert (status, data["message"]) == (404, "Not Found")


async def test_token_narrowing(api, github_sim):
    github_sim.sim.add_repo("acme/second", installation_id=INSTALLATION_ID)
    status, data = await api.mint(body={"repositories": ["widgets"], "permissions": {"contents": "read"}})
    assert status == 201
    assert data["permissions"] == {"contents": "read", "metadata": "read"}
    assert data["repository_selection"] == "selected"
    assert [r["full_name"] for r in data["repositories"]] == [REPOSITORY]
    narrow = f"token {data['token']}"
    assert (await api.request("GET", f"/repos/{REPOSITORY}/contents/README.md", auth=narrow))[0] == 200
    assert (await api.request("GET", "/repos/acme/second", auth=narrow))[0] == 404
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/check-runs", auth=narrow,
                                     json_body={"name": "x", "head_sha": HEAD})
    assert (status, data["message"]) == (403, "Resource not accessible by integration")


@pytest.mark.parametrize("body", [{"permissions": {"administration": "write"}}, {"permissions": {"contents": "write"}},
                                  {"repositories": ["not-there"]}])
async def test_token_cannot_be_wider_than_the_installation(api, body):
    status, data = await api.mint(body=body)
    assert status == 422 and data["message"]


# -- spec validation -------------------------------------------------------------------------


async def test_non_conforming_body_is_422_in_github_shape(api):
    comment = api.server.sim.add_comment(REPOSITORY, 7, "/deploy")
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/issues/comments/{comment.id}/reactions",
                                     json_body={"content": "thumbs"})
    assert status == 422
    assert set(data) >= {"message", "errors", "documentation_url"}
    assert data["errors"][0]["field"] == "content"
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/issues/7/comments", json_body={"text": "x"})
    assert status == 422 and data["errors"][0]["code"] == "missing_field" and data["errors"][0]["field"] == "body"


async def test_missing_or_unparsable_body(api):
    status, _ = await api.request("POST", f"/repos/{REPOSITORY}/check-runs")
    assert status == 422
    async with api.session.post(api.server.url + f"/repos/{REPOSITORY}/check-runs", data=b"{not json",
                                headers={"Authorization": f"token {api.token}",
                                         "Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert (await response.json())["message"] == "Problems parsing JSON"


async def test_bad_parameter_types_are_422(api):
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}/pulls/seven")
    assert status == 422
    status, _ = await api.request("GET", f"/repos/{REPOSITORY}/issues/7/comments?per_page=many")
    assert status == 422


async def test_unknown_paths_and_methods_are_404(api):
    assert await api.request("GET", "/nope") == (404, {"message": "Not Found",
                                                       "documentation_url": "https://docs.github.com/rest"})
    assert (await api.request("DELETE", f"/repos/{REPOSITORY}/pulls/7"))[0] == 404


# -- GitHub behaviours -----------------------------------------------------------------------


async def test_pull_request_shape(api, github_sim):
    github_sim.sim.add_pull_request(REPOSITORY, 8, head_sha="c" * 40, fork=True, user="mallory",
                                    labels=["deploy:staging"])
    github_sim.sim.add_pull_request(REPOSITORY, 9, head_sha="d" * 40, head_repo=None)
    _, pr = await api.request("GET", f"/repos/{REPOSITORY}/pulls/8")
    assert pr["head"]["repo"]["fork"] is True and pr["head"]["repo"]["full_name"] == "mallory/widgets"
    assert pr["base"]["ref"] == "main" and pr["labels"][0]["name"] == "deploy:staging"
    _, pr = await api.request("GET", f"/repos/{REPOSITORY}/pulls/9")
    assert pr["head"]["repo"] is None
    assert (await api.request("GET", f"/repos/{REPOSITORY}/pulls/99"))[0] == 404


@pytest.mark.parametrize("role,legacy", [("admin", "admin"), ("maintain", "write"), ("write", "write"),
                                         ("triage", "read"), ("read", "read")])
async def test_collaborator_permission_legacy_mapping(api, github_sim, role, legacy):
    github_sim.sim.add_collaborator(REPOSITORY, "dev", role)
    status, data = await api.request("GET", f"/repos/{REPOSITORY}/collaborators/dev/permission")
    assert status == 200 and (data["permission"], data["role_name"]) == (legacy, role)


async def test_custom_role_and_non_collaborator(api, github_sim):
    github_sim.sim.add_collaborator(REPOSITORY, "deployer", "release-manager", base_role="maintain")
    _, data = await api.request("GET", f"/repos/{REPOSITORY}/collaborators/deployer/permission")
    assert (data["permission"], data["role_name"]) == ("write", "release-manager")
    assert (await api.request("GET", f"/repos/{REPOSITORY}/collaborators/stranger/permission"))[0] == 404


async def test_comments_create_list_edit_and_paginate(api, github_sim):
    status, created = await api.request("POST", f"/repos/{REPOSITORY}/issues/7/comments", json_body={"body": "one"})
    assert status == 201 and created["user"]["login"] == "flareship[bot]"
    status, edited = await api.request("PATCH", f"/repos/{REPOSITORY}/issues/comments/{created['id']}",
                                       json_body={"body": "edited"})
    assert status == 200 and edited["body"] == "edited"
    for i in range(4):
        github_sim.sim.add_comment(REPOSITORY, 7, f"c{i}")
    status, headers, body = await api.request("GET", f"/repos/{REPOSITORY}/issues/7/comments?per_page=2", raw=True)
    assert len(json.loads(body)) == 2
    next_url = headers["Link"].split(";")[0].strip("<>")
    assert next_url.startswith(api.server.url + "/repos/") and "page=2" in next_url
    _, page2 = await api.request("GET", next_url)
    assert [c["body"] for c in page2] == ["c1", "c2"]


async def test_reactions_201_then_200(api, github_sim):
    comment = github_sim.sim.add_comment(REPOSITORY, 7, "/deploy staging")
    path = f"/repos/{REPOSITORY}/issues/comments/{comment.id}/reactions"
    first = await api.request("POST", path, json_body={"content": "eyes"})
    second = await api.request("POST", path, json_body={"content": "eyes"})
    assert (first[0], second[0]) == (201, 200)
    assert first[1]["id"] == second[1]["id"]


@pytest.mark.parametrize("label", ["deploy:staging", "deploy/production", "needs review"])
async def test_remove_label(api, github_sim, label):
    github_sim.sim.repo(REPOSITORY).pulls[7].labels.append(label)
    path = f"/repos/{REPOSITORY}/issues/7/labels/{quote(label, safe='')}"
    assert (await api.request("DELETE", path))[0] == 200
    assert github_sim.sim.repo(REPOSITORY).pulls[7].labels == []
    assert (await api.request("DELETE", path))[0] == 404


async def test_check_run_lifecycle(api, github_sim):
    status, run = await api.request("POST", f"/repos/{REPOSITORY}/check-runs", json_body={
        "name": "Deploy to staging", "head_sha": HEAD, "external_id": "dep_1", "status": "in_progress",
        "output": {"title": "Deploying", "summary": "step 1"}})
    assert status == 201 and run["status"] == "in_progress" and run["conclusion"] is None
    path = f"/repos/{REPOSITORY}/check-runs/{run['id']}"
    status, run = await api.request("PATCH", path, json_body={
        "conclusion": "success", "output": {"title": "Live", "summary": "done"},
        "actions": [{"label": "Roll back", "description": "Return to the previous release", "identifier": "rollback"}]})
    assert status == 200 and run["status"] == "completed" and run["completed_at"]
    _, fetched = await api.request("GET", path)
    assert fetched["output"]["summary"] == "done" and fetched["actions"][0]["identifier"] == "rollback"
    _, listed = await api.request("GET", f"/repos/{REPOSITORY}/commits/{HEAD}/check-runs?check_name=Deploy%20to%20staging")
    assert listed["total_count"] == 1


@pytest.mark.parametrize("extra", [
    {"status": "completed"},
    {"completed_at": "2026-01-01T00:00:00Z"},
    {"output": {"title": "t", "summary": "s" * 65536}},
    {"output": {"title": "t", "summary": "s", "text": "t" * 65536}},
    {"output": {"title": "t", "summary": "s", "annotations": [
        {"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "notice", "message": "m"}] * 51}},
    {"actions": [{"label": "a", "description": "d", "identifier": f"i{i}"} for i in range(4)]},
    {"actions": [{"label": "x" * 21, "description": "d", "identifier": "i"}]},
    {"actions": [{"label": "x", "description": "d" * 41, "identifier": "i"}]},
    {"actions": [{"label": "x", "description": "d", "identifier": "i" * 21}]},
    {"status": "waiting"},
])
async def test_check_run_limits_are_enforced(api, extra):
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/check-runs",
                                     json_body={"name": "Deploy", "head_sha": HEAD, **extra})
    assert status == 422, data


async def test_deployment_defaults_follow_github(api, github_sim):
    sim = github_sim.sim
    repo = sim.repo(REPOSITORY)
    # auto_merge defaults to true: a branch behind the default branch gets merged, no deployment.
    repo.behind_default.add("feature")
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={"ref": "feature"})
    assert status == 202 and "Auto-merged" in data["message"]
    # required_contexts omitted means every check must pass.
    sim.add_status(REPOSITORY, HEAD, context="ci", state="failure")
    status, data = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={"ref": HEAD})
    assert status == 409
    status, dep = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={
        "ref": HEAD, "environment": "staging", "auto_merge": False, "required_contexts": [],
        "payload": {"deployment": "dep_1"}, "transient_environment": False, "production_environment": False})
    assert status == 201 and dep["environment"] == "staging" and dep["payload"] == {"deployment": "dep_1"}
    assert len(repo.deployments) == 1


async def test_deployment_statuses_and_auto_inactive(api, github_sim):
    deps = []
    for _ in range(2):
        _, dep = await api.request("POST", f"/repos/{REPOSITORY}/deployments", json_body={
            "ref": HEAD, "environment": "staging", "auto_merge": False, "required_contexts": []})
        deps.append(dep)
        status, st = await api.request("POST", f"/repos/{REPOSITORY}/deployments/{dep['id']}/statuses", json_body={
            "state": "success", "environment_url": "https://w.example", "log_url": "https://f.example/d/1"})
        assert status == 201 and st["target_url"] == "https://f.example/d/1"
    _, first_statuses = await api.request("GET", f"/repos/{REPOSITORY}/deployments/{deps[0]['id']}/statuses")
    assert first_statuses[0]["state"] == "inactive"
    status, _ = await api.request("POST", f"/repos/{REPOSITORY}/deployments/{deps[1]['id']}/statuses",
                                  json_body={"state": "exploded"})
    assert status == 422
    status, _ = await api.request("POST", f"/repos/{REPOSITORY}/deployments/{deps[1]['id']}/statuses",
                                  json_body={"state": "failure", "description": "d" * 141})
    assert status == 422
    _, listed = await api.request("GET", f"/repos/{REPOSITORY}/deployments?environment=staging")
    assert [d["id"] for d in listed] == [deps[1]["id"], deps[0]["id"]]


async def test_reviews_combined_status_compare_environments(api, github_sim):
    sim = github_sim.sim
    sim.add_review(REPOSITORY, 7, user="lead", state="APPROVED")
    _, reviews = await api.request("GET", f"/repos/{REPOSITORY}/pulls/7/reviews")
    assert reviews[0]["state"] == "APPROVED" and reviews[0]["commit_id"] == HEAD
    _, combined = await api.request("GET", f"/repos/{REPOSITORY}/commits/{HEAD}/status")
    assert combined["state"] == "pending" and combined["total_count"] == 0
    sim.add_status(REPOSITORY, HEAD, context="ci", state="success")
    _, combined = await api.request("GET", f"/repos/{REPOSITORY}/commits/{HEAD}/status")
    assert combined["state"] == "success"
    _, cmp = await api.request("GET", f"/repos/{REPOSITORY}/compare/main...{HEAD}")
    assert (cmp["status"], cmp["ahead_by"]) == ("ahead", 1)
    _, cmp = await api.request("GET", f"/repos/{REPOSITORY}/compare/{HEAD}...main")
    assert cmp["status"] == "behind"
    sim.add_environment(REPOSITORY, "staging")
    _, envs = await api.request("GET", f"/repos/{REPOSITORY}/environments")
    assert [e["name"] for e in envs["environments"]] == ["staging"]


async def test_contents_and_tarball_redirect(api):
    status, data = await api.request("GET", f"/repos/{REPOSITORY}/contents/README.md?ref={SHA}")
    assert status == 200 and data["encoding"] == "base64"
    status, headers, _ = await api.request("GET", f"/repos/{REPOSITORY}/tarball/{SHA}", raw=True)
    assert status == 302 and "/_codeload/" in headers["Location"]
    status, headers, body = await api.request("GET", headers["Location"], auth="", raw=True)
    assert status == 200 and body[:2] == b"\x1f\x8b"


# -- etags, rate limits, faults ---------------------------------------------------------------


async def test_etag_and_rate_limit_headers(api, github_sim):
    status, headers, _ = await api.request("GET", f"/repos/{REPOSITORY}", raw=True)
    assert status == 200
    for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used",
                 "x-ratelimit-resource"):
        assert name in headers
    remaining = int(headers["x-ratelimit-remaining"])
    status, again, body = await api.request("GET", f"/repos/{REPOSITORY}", raw=True,
                                            headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert int(again["x-ratelimit-remaining"]) == remaining


async def test_rate_headers_on_errors_too(api):
    status, headers, _ = await api.request("GET", f"/repos/{REPOSITORY}", auth="token ghs_unknown", raw=True)
    assert status == 401 and "x-ratelimit-remaining" in headers
    status, headers, _ = await api.request("GET", "/nope", raw=True)
    assert status == 404 and "x-ratelimit-limit" in headers


async def test_faults_count_down_and_slow_answers(api, github_sim):
    fault = github_sim.sim.inject_fault("GET", "/repos/*/pulls/*", 502, times=2)
    assert (await api.request("GET", f"/repos/{REPOSITORY}/pulls/7"))[0] == 502
    assert (await api.request("GET", f"/repos/{REPOSITORY}/pulls/7"))[0] == 502
    assert (await api.request("GET", f"/repos/{REPOSITORY}/pulls/7"))[0] == 200
    assert fault.hits == 2
    github_sim.sim.inject_fault("GET", "/repos/*", delay=0.2)
    started = time.monotonic()
    assert (await api.request("GET", f"/repos/{REPOSITORY}"))[0] == 200
    assert time.monotonic() - started >= 0.2
    github_sim.sim.inject_fault("*", "/repos/*", 429, retry_after=7)
    status, headers, _ = await api.request("GET", f"/repos/{REPOSITORY}", raw=True)
    assert status == 429 and headers["retry-after"] == "7"


async def test_request_log(api, github_sim):
    await api.request("POST", f"/repos/{REPOSITORY}/issues/7/comments", json_body={"body": "logged"})
    entry = github_sim.sim.writes[-1]
    assert (entry.method, entry.status, entry.auth, entry.body) == ("POST", 201, "token", {"body": "logged"})
    assert entry.template == "/repos/{owner}/{repo}/issues/{issue_number}/comments"
    assert "authorization" not in entry.headers


async def test_ghes_prefix_mode(github_sim_ghes, github_session):
    seed_repo(github_sim_ghes)
    api = Api(github_session, github_sim_ghes)
    await api.login()
    assert (await api.request("GET", f"/repos/{REPOSITORY}"))[0] == 200
    outside = await api.request("GET", f"{github_sim_ghes.root_url}/repos/{REPOSITORY}")
    assert outside[0] == 404


# -- webhooks -----------------------------------------------------------------------------------


async def test_deliver_signs_like_github(github_sim):
    received: list[tuple[dict, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/webhooks/github", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        payload = {"action": "created", "comment": {"body": "/deploy"}, "installation": {"id": INSTALLATION_ID}}
        delivery = await github_sim.deliver("issue_comment", payload, f"http://127.0.0.1:{port}/webhooks/github",
                                            "s3cret")
        again = await github_sim.deliver("issue_comment", payload, f"http://127.0.0.1:{port}/webhooks/github",
                                         "s3cret", delivery_id=delivery.delivery_id)
    finally:
        await runner.cleanup()
    assert delivery.status == 202 and again.delivery_id == delivery.delivery_id
    headers, body = received[0]
    lower = {k.lower(): v for k, v in headers.items()}
    assert lower["user-agent"].startswith("GitHub-Hookshot/")
    assert lower["x-hub-signature"].startswith("sha1=")
    event = Event.from_http(lower, body, secret="s3cret")
    assert (event.event, event.delivery_id, event.data) == ("issue_comment", delivery.delivery_id, payload)
    with pytest.raises(ValidationFailure):
        Event.from_http(lower, body, secret="wrong")


async def test_start_github_sim_outside_pytest_fixtures():
    server = await start_github_sim(prefix="api/v3/")
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/api/v3"
        assert "BEGIN RSA PRIVATE KEY" in server.app_private_key
    finally:
        await server.close()


async def test_standalone_sim_prints_working_settings(tmp_path, github_session):
    import asyncio
    import io

    from bot.github.app import GitHubApp
    from bot.sim.github.__main__ import DEMO_INSTALLATION, DEMO_REPOSITORY, serve

    out, stop = io.StringIO(), asyncio.Event()
    key_path = tmp_path / "app.pem"
    task = asyncio.ensure_future(serve("127.0.0.1", 0, "/api/v3", key_path, stop=stop, out=out))
    for _ in range(200):
        if "GITHUB_PRIVATE_KEY_PATH" in out.getvalue():
            break
        await asyncio.sleep(0.01)
    settings = dict(line.strip().removeprefix("export ").split("=", 1)
                    for line in out.getvalue().splitlines() if "export " in line)
    try:
        app = GitHubApp(github_session, app_id=settings["GITHUB_APP_ID"],
                        private_key=Path(settings["GITHUB_PRIVATE_KEY_PATH"]).read_text(),
                        base_url=settings["GITHUB_API_URL"], write_interval=0)
        gh = await app.client(DEMO_INSTALLATION)
        assert (await gh.getitem(f"/repos/{DEMO_REPOSITORY}"))["full_name"] == DEMO_REPOSITORY
        assert settings["GITHUB_API_URL"].endswith("/api/v3")
    finally:
        stop.set()
        await task
