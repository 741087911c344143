"""FlareshipGitHubAPI against the simulated GitHub: rate-limit waits, retries, pacing, ETags, GHES."""

from __future__ import annotations

import asyncio
import http

import pytest
from gidgethub import BadRequest, GitHubBroken

from bot.errors import FlareshipError
from bot.github.client import API_VERSION, RetryPolicy, WritePacer, rate_limit_wait
from bot.github.contents import download_tree, read_file
from tests.plugins.github_sim import (
    INSTALLATION_ID,
    REPOSITORY,
    make_github_app,
    seed_repo,
)

PULL = f"/repos/{REPOSITORY}/pulls/1"
COMMENTS = f"/repos/{REPOSITORY}/issues/1/comments"


@pytest.fixture
async def gh(github_app, github_sim):
    github_sim.sim.add_pull_request(REPOSITORY, 1, head_sha="b" * 40)
    return await github_app.client(INSTALLATION_ID)


def _statuses(github_sim, method: str, path: str) -> list[int]:
    return [r.status for r in github_sim.sim.calls(method, path)]


async def test_sends_api_version_and_installation_token(gh, github_sim):
    await gh.getitem(PULL)
    logged = github_sim.sim.calls("GET", PULL)[0]
    assert logged.headers["x-github-api-version"] == API_VERSION
    assert logged.auth == "token" and logged.installation_id == INSTALLATION_ID


async def test_primary_rate_limit_waits_until_reset(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 403, ratelimit_remaining=0, ratelimit_reset_in=5)
    pr = await gh.getitem(PULL)
    assert pr["number"] == 1
    assert _statuses(github_sim, "GET", PULL) == [403, 200]
    assert len(github_sleep.calls) == 1 and 4 <= github_sleep.calls[0] <= 7


async def test_429_waits_retry_after(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 429, retry_after=3)
    await gh.getitem(PULL)
    assert github_sleep.calls == [3.0]
    assert _statuses(github_sim, "GET", PULL) == [429, 200]


async def test_secondary_403_waits_retry_after_even_for_writes(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("POST", COMMENTS, 403, retry_after=2)
    comment = await gh.post(COMMENTS, data={"body": "hello"})
    assert comment["body"] == "hello"
    assert github_sleep.calls == [2.0]
    assert _statuses(github_sim, "POST", COMMENTS) == [403, 201]


async def test_secondary_limit_without_headers_backs_off_a_minute(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 403)  # "You have exceeded a secondary rate limit"
    await gh.getitem(PULL)
    assert github_sleep.calls == [60.0]


async def test_a_wait_too_long_raises_sys_003_with_retry_after(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 429, retry_after=3600)
    with pytest.raises(FlareshipError) as exc:
        await gh.getitem(PULL)
    assert exc.value.code == "SYS_003" and exc.value.retry_after == 3600
    assert github_sleep.calls == []


async def test_rate_limit_attempts_are_capped(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 429, retry_after=1, times=10)
    with pytest.raises(FlareshipError) as exc:
        await gh.getitem(PULL)
    assert exc.value.code == "SYS_003"
    assert len(github_sim.sim.calls("GET", PULL)) == RetryPolicy().max_rate_limit_attempts
    assert github_sleep.calls == [1.0, 1.0]


async def test_a_plain_403_is_not_waited_on(github_app, github_sim, github_sleep):
    narrow = await github_app.installation_token(INSTALLATION_ID, permissions={"checks": "write"})
    gh = github_app.client_for_token(narrow.token)
    with pytest.raises(BadRequest) as exc:
        await gh.getitem(f"/repos/{REPOSITORY}/contents/x")
    assert int(exc.value.status_code) == 403
    assert github_sleep.calls == []


async def test_exhausted_installation_quota_raises_instead_of_sleeping_an_hour(gh, github_sim, github_sleep):
    github_sim.sim.rate_limit = 3  # the token mint was made with the App's JWT, not counted here
    for _ in range(3):
        await gh.getitem(f"/repos/{REPOSITORY}")
    with pytest.raises(FlareshipError) as exc:
        await gh.getitem(f"/repos/{REPOSITORY}")
    assert exc.value.code == "SYS_003" and exc.value.retry_after > 60
    assert github_sleep.calls == []


async def test_rate_limit_headers_are_read(gh):
    await gh.getitem(PULL)
    assert gh.rate_limit is not None and gh.rate_limit.limit == 5000 and gh.rate_limit.remaining == 4999


async def test_502_on_get_is_retried_with_backoff(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("GET", PULL, 502, times=2)
    await gh.getitem(PULL)
    assert _statuses(github_sim, "GET", PULL) == [502, 502, 200]
    assert github_sleep.calls == [0.01, 0.02]


async def test_server_error_retries_are_bounded(gh, github_sim):
    github_sim.sim.inject_fault("GET", PULL, 503, times=10)
    with pytest.raises(GitHubBroken):
        await gh.getitem(PULL)
    assert len(github_sim.sim.calls("GET", PULL)) == RetryPolicy().max_server_error_attempts


async def test_502_on_post_is_not_retried(gh, github_sim, github_sleep):
    github_sim.sim.inject_fault("POST", COMMENTS, 502)
    with pytest.raises(GitHubBroken):
        await gh.post(COMMENTS, data={"body": "once"})
    assert _statuses(github_sim, "POST", COMMENTS) == [502]
    assert github_sleep.calls == []


async def test_connection_refused_on_get_is_retried_then_reported(github_session, github_sim, github_sleep):
    app = make_github_app(github_session, github_sim, sleep=github_sleep)
    gh = app.client_for_token("ghs_unused")
    gh.base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(GitHubBroken):
        await gh.getitem("/repos/acme/widgets")
    assert len(github_sleep.calls) == RetryPolicy().max_server_error_attempts - 1
    with pytest.raises(FlareshipError) as exc:
        await gh.post("/repos/acme/widgets/issues/1/comments", data={"body": "x"})
    assert exc.value.code == "SYS_002"


async def test_writes_are_paced_per_installation(github_session, github_sim, github_sleep):
    seed_repo(github_sim)
    github_sim.sim.add_pull_request(REPOSITORY, 1, head_sha="b" * 40)
    app = make_github_app(github_session, github_sim, sleep=github_sleep, write_interval=1.0)
    gh = await app.client(INSTALLATION_ID)
    await asyncio.gather(*(gh.post(COMMENTS, data={"body": f"c{i}"}) for i in range(3)))
    await gh.getitem(PULL)  # reads are not paced
    assert len(github_sleep.calls) == 2
    assert all(0.5 < wait <= 1.0 for wait in github_sleep.calls)
    # A second client of the same installation shares the pacer.
    other = await app.client(INSTALLATION_ID)
    await other.post(COMMENTS, data={"body": "again"})
    assert len(github_sleep.calls) == 3


async def test_pacer_waits_out_the_gap_with_a_clock():
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = WritePacer(1.0, clock=lambda: now[0], sleep=sleep)
    await pacer.wait_turn()
    now[0] += 0.25
    await pacer.wait_turn()
    now[0] += 5
    await pacer.wait_turn()
    assert slept == [0.75]


async def test_no_pacing_when_interval_is_zero(gh, github_sleep):
    for i in range(3):
        await gh.post(COMMENTS, data={"body": f"c{i}"})
    assert github_sleep.calls == []


async def test_etag_repeat_read_is_a_304_served_from_cache(gh, github_sim, github_app):
    first = await gh.getitem(PULL)
    remaining = gh.rate_limit.remaining
    second = await gh.getitem(PULL)
    assert first == second
    assert _statuses(github_sim, "GET", PULL) == [200, 304]
    assert github_sim.sim.calls("GET", PULL)[1].headers.get("if-none-match")
    assert github_app.stats.count("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", 304) == 1
    # A 304 does not cost GitHub quota.
    assert github_sim.sim.rate_state(f"installation:{INSTALLATION_ID}")[0] == remaining


async def test_etag_cache_is_per_installation(github_app, github_sim):
    github_sim.sim.add_pull_request(REPOSITORY, 1, head_sha="b" * 40)
    github_sim.sim.add_installation(77, account="acme")  # all of acme's repositories
    one = await github_app.client(INSTALLATION_ID)
    two = await github_app.client(77)
    await one.getitem(PULL)
    await two.getitem(PULL)
    await one.getitem(PULL)
    assert _statuses(github_sim, "GET", PULL) == [200, 200, 304]


async def test_stats_count_per_method_and_template(gh, github_app):
    github_app.stats.reset()
    await gh.getitem(PULL)
    await gh.post(COMMENTS, data={"body": "x"})
    await gh.post(COMMENTS, data={"body": "y"})
    assert github_app.stats.count("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments") == 2
    assert github_app.stats.count("GET") == 1
    assert github_app.stats.writes == 2


async def test_ghes_prefix(github_sim_ghes, github_session, github_sleep):
    sha = seed_repo(github_sim_ghes, files={"src/index.js": "export default {}", "README.md": "hi"})
    sim = github_sim_ghes.sim
    sim.add_pull_request(REPOSITORY, 1, head_sha=sha)
    for i in range(35):
        sim.add_comment(REPOSITORY, 1, f"comment {i}")
    assert github_sim_ghes.url.endswith("/api/v3")
    app = make_github_app(github_session, github_sim_ghes, sleep=github_sleep)
    gh = await app.client(INSTALLATION_ID)
    assert await read_file(gh, REPOSITORY, "README.md", sha) == b"hi"
    assert (await download_tree(gh, REPOSITORY, sha))["src/index.js"] == b"export default {}"
    bodies = [c["body"] async for c in gh.getiter(COMMENTS)]  # Link URLs keep the prefix
    assert len(bodies) == 35
    assert all(r.status in (200, 201, 302) for r in sim.requests), [(r.path, r.status) for r in sim.requests]
    assert app.stats.count(template="/repos/{owner}/{repo}/issues/{issue_number}/comments") == 2


def test_rate_limit_wait_rules():
    policy = RetryPolicy()
    plain = BadRequest(http.HTTPStatus(403), "Resource not accessible by integration", headers={})
    assert rate_limit_wait(plain, attempt=1, now=0, policy=policy) is None
    dated = BadRequest(http.HTTPStatus(429), headers={"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"})
    assert rate_limit_wait(dated, attempt=1, now=10, policy=policy) == 20
    by_reset = BadRequest(http.HTTPStatus(403), headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "100"})
    assert rate_limit_wait(by_reset, attempt=1, now=90, policy=policy) == 11
    secondary = BadRequest(http.HTTPStatus(429), headers={})
    assert rate_limit_wait(secondary, attempt=2, now=0, policy=policy) == 120
    assert rate_limit_wait(BadRequest(http.HTTPStatus(404), headers={}), attempt=1, now=0, policy=policy) is None
