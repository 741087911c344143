"""Waiting for a CI build holds no environment lease: the deployment is parked (queued, its check
run told which run it waits for), another deployment of the environment runs meanwhile, a wake
looks again at once, and the zip is downloaded once per deployment (cached on disk)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.engine import artifacts as artifacts_module
from bot.engine.artifact_cache import ArtifactCache, cache_key
from bot.engine.artifacts import BuildSource
from bot.engine.build import BuildConfig
from bot.engine.model import STEP_NAMES
from bot.github.actions import Artifact
from bot.github.reporter import Reporter
from bot.sim.github.actions import add_artifact, add_run, finish_run, make_zip
from bot.store.pr_state import PullRequestState
from tests.artifacts.shop import BUNDLE, REPO, SHA, SOURCE
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

OTHER_SHA = "f" * 40
OTHER_BUNDLE = {"index.js": "export default { async fetch() { return new Response('other PR'); } };\n"}


def _zips(github_sim) -> int:
    return len(github_sim.sim.calls("GET", "*/actions/artifacts/*/zip"))


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _request(sha: str) -> PrepareRequest:
    return PrepareRequest(environment="staging", repository=REPO, sha=sha, installation_id=INSTALLATION_ID)


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_another_deployment_runs_while_one_waits_for_its_build(sim_env, database, github_sim, github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    for path, content in SOURCE.items():
        github_sim.sim.set_file(REPO, OTHER_SHA, path, content)
    slow = add_run(github_sim.sim, REPO, SHA, status="in_progress")
    finish_run(github_sim.sim, add_run(github_sim.sim, REPO, OTHER_SHA), artifacts={"worker": OTHER_BUNDLE})
    engine, clients = make_engine(sim_env.settings(database.url, build_poll_seconds=0.05), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        waiting = await engine.request_deploy(_request(SHA), DeployOptions())

        async def announced() -> bool:
            return any(line.message.startswith("Waiting for build") for line in await engine.logs(waiting.id))
        await _until(announced)
        other = await engine.request_deploy(_request(OTHER_SHA), DeployOptions())
        other = await wait_final(engine, other.id)
        assert other.status == "completed", other.error
        parked = await engine.get(waiting.id)
        assert parked.status == "queued" and all(s.status == "pending" for s in parked.steps)
        script = sim_env.sim.script(ACCOUNT_ID, "shop-staging")
        assert b"other PR" in script.version(script.live_version_id()).modules["index.js"].content
        assert await engine.store.get_lease(waiting.target, "staging") is None  # the wait holds nothing

        finish_run(github_sim.sim, slow, artifacts={"worker": BUNDLE})
        done = await wait_final(engine, waiting.id)
        assert done.status == "completed", done.error
        assert b"built by CI" in script.version(script.live_version_id()).modules["chunks/greet.js"].content
        assert _zips(github_sim) == 2  # one per deployment
    finally:
        await engine.stop()
        await clients.aclose()


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_a_finished_run_wakes_the_wait_and_a_retry_downloads_nothing(sim_env, database, github_sim,
                                                                         github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    run = add_run(github_sim.sim, REPO, SHA, status="queued")
    engine, clients = make_engine(sim_env.settings(database.url, build_poll_seconds=3600), database,
                                  github=make_github_app(github_session, github_sim))  # only a wake looks again
    await engine.start()
    try:
        d = await engine.request_deploy(_request(SHA), DeployOptions())
        await _until(lambda: _has_wait(engine, d.id))
        finish_run(github_sim.sim, run, artifacts={"worker": {"server.js": "export default {};\n"}})
        await asyncio.sleep(0.2)
        assert (await engine.get(d.id)).status == "queued"  # not looked at before the wake
        engine.build_finished()
        failed = await wait_final(engine, d.id)
        assert failed.status == "failed" and failed.error is not None
        assert "has no index.js" in failed.error.message  # downloaded, then refused at step 1
        assert _zips(github_sim) == 1
        record = (await engine.store.get(d.id)).state["build_artifact"]
        await engine.retry(d.id, step_name=STEP_NAMES[0])  # from step 1: the bundle is read again
        retried = await wait_final(engine, d.id)
        assert retried.attempt == 2 and retried.steps[0].attempt == 2 and retried.status == "failed"
        assert _zips(github_sim) == 1  # the retry read the cached zip
        assert (await engine.store.get(d.id)).state["build_artifact"] == record
    finally:
        await engine.stop()
        await clients.aclose()


def _check_run_titles(github_sim) -> list[str]:
    """The title of every check-run write, in order (duplicates collapsed)."""
    titles: list[str] = []
    for r in github_sim.sim.calls():
        if r.method in ("POST", "PATCH") and "/check-runs" in r.path and r.status < 300:
            title = (r.body.get("output") or {}).get("title")
            if title and (not titles or titles[-1] != title):
                titles.append(title)
    return titles


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_the_check_run_title_says_it_waits_for_the_build_then_that_it_runs(sim_env, database, github_sim,
                                                                                github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    run = add_run(github_sim.sim, REPO, SHA, status="in_progress")
    app = make_github_app(github_session, github_sim)
    engine, clients = make_engine(sim_env.settings(database.url), database, github=app)
    reporter = Reporter(engine=engine, github=app.client, store=PullRequestState(database),
                        public_url="http://127.0.0.1:8000", interval=0.01)
    reporter.start()
    await engine.start()
    try:
        d = await engine.request_deploy(_request(SHA), DeployOptions())

        async def shown() -> bool:
            await reporter.drain()
            return any(t.startswith("Waiting for build") for t in _check_run_titles(github_sim))
        await _until(shown)
        [check] = github_sim.sim.repo(REPO).check_runs.values()
        assert check["status"] == "queued"
        assert check["output"]["title"] == f"Waiting for build: {run.name} for staging"
        [awaited] = (await engine.get(d.id)).waiting_for_build
        assert awaited.url.endswith(f"/{REPO}/actions/runs/{run.id}")
        assert awaited.url in check["output"]["text"] and f"]({awaited.url})" in check["output"]["summary"]

        finish_run(github_sim.sim, run, artifacts={"worker": BUNDLE})
        assert (await wait_final(engine, d.id)).status == "completed"
        await reporter.drain()
        titles = _check_run_titles(github_sim)
        waited = titles.index(f"Waiting for build: {run.name} for staging")
        after = titles[waited + 1:]
        assert after[-1] == "Live on staging" and not [t for t in after if t.startswith("Waiting")]
        assert (await engine.get(d.id)).waiting_for_build == []  # the running deployment no longer waits
    finally:
        await reporter.stop()
        await engine.stop()
        await clients.aclose()


async def _has_wait(engine, deployment_id: str) -> bool:
    row = await engine.store.get(deployment_id)
    return bool((row.state or {}).get("build_wait"))


# -- the cache and the build source, without an engine ---------------------------------------------

def _artifact(data: bytes, artifact_id: int = 7, digest: str | None = None) -> Artifact:
    return Artifact(id=artifact_id, name="worker", size_in_bytes=len(data), expired=False,
                    created_at="2026-01-01T00:00:00Z", run_id=1, head_sha=SHA, digest=digest)


async def test_a_recorded_artifact_is_read_from_the_cache_without_github(tmp_path):
    cache = ArtifactCache(tmp_path)
    data = make_zip(BUNDLE)
    key = cache_key("https://api.github.com", REPO, _artifact(data))
    await cache.put(key, data)

    async def no_github():
        raise AssertionError("GitHub must not be asked for a cached artifact")

    async def announce(_message: str) -> None:
        raise AssertionError("nothing is awaited")

    source = BuildSource(github=no_github, repository=REPO, sha=SHA, build=BuildConfig(artifact="worker"),
                         main="index.js", started_at=datetime.now(UTC), clock=lambda: datetime.now(UTC),
                         announce=announce, cache=cache, record={"key": key, "id": 7, "digest": None})
    output = await source.output()
    assert [m.name for m in output.modules][:1] == ["index.js"]


async def test_a_cached_zip_that_does_not_match_the_digest_is_downloaded_again(tmp_path, github_sim,
                                                                             github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    stored = add_artifact(github_sim.sim, add_run(github_sim.sim, REPO, SHA, status="completed"), "worker", BUNDLE)
    gh = await make_github_app(github_session, github_sim).client(INSTALLATION_ID)
    [artifact] = await artifacts_module.actions.artifacts_named(gh, REPO, "worker")
    assert artifact.digest and artifact.digest.startswith("sha256:")
    cache = ArtifactCache(tmp_path)
    await cache.put(cache_key(gh.base_url, REPO, artifact), b"not the zip")
    _record, data = await artifacts_module.obtain(gh, REPO, artifact, cache)
    assert data == stored.zip_bytes and _zips(github_sim) == 1
    _record, again = await artifacts_module.obtain(gh, REPO, artifact, cache)
    assert again == data and _zips(github_sim) == 1


async def test_the_cache_is_bounded_by_size_and_age(tmp_path):
    cache = ArtifactCache(tmp_path, max_total_bytes=25, max_age_seconds=3600)
    keys = [cache_key("o", REPO, _artifact(b"x" * 10, i)) for i in range(4)]
    for i, key in enumerate(keys):
        await cache.put(key, b"x" * 10)
        path = tmp_path / f"{key}.zip"
        os.utime(path, (time.time() - 100 + i, time.time() - 100 + i))  # oldest first
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(f"{k}.zip" for k in keys[2:])  # 2 x 10 bytes fit under 25
    old = tmp_path / f"{keys[2]}.zip"
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    cache.prune()
    assert not old.exists() and (tmp_path / f"{keys[3]}.zip").exists()
    with pytest.raises(ValueError):
        await cache.get("../escape")


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_a_retry_waits_for_a_rerun_without_holding_the_environment(sim_env, database, github_sim,
                                                                        github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    add_run(github_sim.sim, REPO, SHA, status="completed", conclusion="failure")
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        d = await engine.request_deploy(_request(SHA), DeployOptions())
        failed = await wait_final(engine, d.id)
        assert failed.status == "failed" and failed.error.code == "DEPLOY_001"
        rerun = add_run(github_sim.sim, REPO, SHA, status="in_progress")  # "Re-run jobs"
        await engine.retry(d.id)

        async def waiting_again() -> bool:
            lines = [line.message for line in await engine.logs(d.id)]
            return any(m.endswith(f"/actions/runs/{rerun.id}") for m in lines)
        await _until(waiting_again)
        assert (await engine.get(d.id)).status == "queued"
        assert await engine.store.get_lease(d.target, "staging") is None
        finish_run(github_sim.sim, rerun, artifacts={"worker": BUNDLE})
        done = await wait_final(engine, d.id)
        assert done.status == "completed", done.error
    finally:
        await engine.stop()
        await clients.aclose()
