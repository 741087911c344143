"""Deploying what CI built: the engine waits for the SHA's workflow run, downloads its artifact once
and uploads the bundle from it; unbuilt TypeScript or npm imports are refused with a how-to."""

from __future__ import annotations

import asyncio

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.errors import FlareshipError
from bot.sim.github.actions import add_run, finish_run
from tests.artifacts.shop import BUNDLE, REPO, SHA, SOURCE
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"])


async def _logs(engine, deployment_id: str) -> list[str]:
    return [line.message for line in await engine.logs(deployment_id)]


async def test_waits_for_the_run_then_deploys_the_artifact(sim_env, database, github_sim, github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    run = add_run(github_sim.sim, REPO, SHA, status="in_progress")
    engine, clients = make_engine(sim_env.settings(database.url, build_poll_seconds=0.05), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                       installation_id=INSTALLATION_ID, trigger="comment"),
                                        DeployOptions())
        for _ in range(200):
            if any(m.startswith("Waiting for build") for m in await _logs(engine, d.id)):
                break
            await asyncio.sleep(0.02)
        waiting = [m for m in await _logs(engine, d.id) if m.startswith("Waiting for build")]
        assert waiting and waiting[0].endswith(f"/{REPO}/actions/runs/{run.id}")
        assert (await engine.get(d.id)).status == "queued"  # parked: no step started, no lease held
        assert await engine.store.get_lease(d.target, "staging") is None
        finish_run(github_sim.sim, run, artifacts={"worker": BUNDLE})
        d = await wait_final(engine, d.id)
        assert d.status == "completed", d.error
        script = sim_env.sim.script(ACCOUNT_ID, "shop-staging")
        version = script.version(script.live_version_id())
        assert {"chunks/greet.js", "index.js"} <= set(version.modules)  # named relative to the artifact root
        assert b"built by CI" in version.modules["chunks/greet.js"].content
        assert version.metadata["main_module"] == "index.js"
        assert len(github_sim.sim.calls("GET", "*/actions/artifacts/*/zip")) == 1
    finally:
        await engine.stop()
        await clients.aclose()


async def test_a_run_that_ends_without_the_artifact_fails_step_1(sim_env, database, github_sim, github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    run = add_run(github_sim.sim, REPO, SHA, status="completed", conclusion="failure")
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                       installation_id=INSTALLATION_ID), DeployOptions())
        d = await wait_final(engine, d.id)
        assert d.status == "failed" and d.error is not None
        assert d.error.code == "DEPLOY_001" and d.error.step == "Validating configuration"
        assert f"/{REPO}/actions/runs/{run.id}" in d.error.message
    finally:
        await engine.stop()
        await clients.aclose()


@pytest.mark.parametrize("files, needle", [
    ({"src/index.ts": "export default {};"}, "src/index.ts needs a build"),
    ({"src/index.js": 'import { Hono } from "hono";\nexport default new Hono();\n'}, "hono"),
])
async def test_unbuilt_main_without_build_is_refused(sim_env, database, github_sim, github_session, files, needle):
    main = next(iter(files))
    config = f'app: {{name: shop, main: {main}, compatibility_date: "2025-06-01"}}\n'
    seed_repo(github_sim, REPO, sha=SHA, files={".github/flareship.yml": config, **files})
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    try:
        with pytest.raises(FlareshipError) as info:
            await engine.prepare(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                installation_id=INSTALLATION_ID))
        assert info.value.code == "DEPLOY_001" and needle in info.value.message
        assert "docs/build-workflow.md" in info.value.message
    finally:
        await clients.aclose()


async def test_dockerfile_image_needs_build_image(sim_env, database, github_sim, github_session):
    config = ('app: {name: shop, main: index.js, compatibility_date: "2025-06-01",\n'
              '      container: {image: ./Dockerfile, class_name: AppContainer}}\n')
    seed_repo(github_sim, REPO, sha=SHA, files={".github/flareship.yml": config, "index.js": "export default {};"})
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    try:
        with pytest.raises(FlareshipError) as info:
            await engine.prepare(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                installation_id=INSTALLATION_ID))
        assert info.value.code == "DEPLOY_001" and "Dockerfile" in info.value.message
    finally:
        await clients.aclose()


async def test_the_wait_survives_a_restart(sim_env, database, github_sim, github_session):
    seed_repo(github_sim, REPO, sha=SHA, files=SOURCE)
    run = add_run(github_sim.sim, REPO, SHA, status="queued")
    settings = sim_env.settings(database.url, build_poll_seconds=0.05)
    first, first_clients = make_engine(settings, database, github=make_github_app(github_session, github_sim))
    await first.start()
    try:
        d = await first.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                      installation_id=INSTALLATION_ID), DeployOptions())
        for _ in range(200):
            if any(m.startswith("Waiting for build") for m in await _logs(first, d.id)):
                break
            await asyncio.sleep(0.02)
        since = (await first.store.get(d.id)).state["build_wait"]["since"]
    finally:
        await first.stop()
        await first_clients.aclose()
    assert (await first.get(d.id)).status == "queued"  # stopped mid-wait: nothing failed, nothing started
    second, second_clients = make_engine(settings, database, github=make_github_app(github_session, github_sim))
    await second.start()
    try:
        await asyncio.sleep(0.3)
        assert (await second.store.get(d.id)).state["build_wait"]["since"] == since  # the deadline is kept
        finish_run(github_sim.sim, run, artifacts={"worker": BUNDLE})
        d = await wait_final(second, d.id, timeout=30)
        assert d.status == "completed", d.error
        waiting = [m for m in await _logs(second, d.id) if m.startswith("Waiting for build")]
        assert len(waiting) == 1  # the restarted engine did not announce the same run again
        assert len(github_sim.sim.calls("GET", "*/actions/artifacts/*/zip")) == 1
    finally:
        await second.stop()
        await second_clients.aclose()
