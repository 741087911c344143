"""Build artifacts through the real HTTP stack: the Actions client against the simulated GitHub,
the wait for a SHA's build, the safe zip reader and the layout of a build artifact."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from bot.engine.artifacts import BuildWait, extract_zip, layout, obtain
from bot.engine.build import (
    BuildConfig,
    bare_imports,
    built_main_name,
    refuse_dockerfile,
    refuse_unbuilt,
)
from bot.errors import FlareshipError
from bot.github import actions
from bot.github.actions import WorkflowRun
from bot.sim.github.actions import (
    actions_of,
    add_artifact,
    add_run,
    expire,
    finish_run,
    make_zip,
)
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

SHA = "c" * 40
OTHER = "d" * 40
REPO = "acme/widgets"
BUNDLE: dict[str, bytes | str] = {"index.js": "export default { fetch() { return new Response('hi'); } };\n",
          "index.js.map": "{}", "chunks/a.js": "export const a = 1;\n",
          "assets/index.html": "<h1>hi</h1>", "assets/img/logo.svg": "<svg/>", "image.tar": b"oci"}


async def _gh(github_sim, github_session, permissions: dict[str, str] | None = None):
    seed_repo(github_sim, REPO, sha=SHA, permissions=permissions)
    app = make_github_app(github_session, github_sim)
    return await app.client(INSTALLATION_ID)


async def test_finds_newest_artifact_of_the_sha_and_downloads_it_without_the_token(github_sim, github_session):
    gh = await _gh(github_sim, github_session)
    sim = github_sim.sim
    old = add_run(sim, REPO, SHA, status="completed", conclusion="success")
    add_artifact(sim, old, "worker", {"index.js": "old"})
    other = add_run(sim, REPO, OTHER, status="completed", conclusion="success")
    add_artifact(sim, other, "worker", {"index.js": "other sha"})
    new = add_run(sim, REPO, SHA, status="completed", conclusion="success")
    fresh = add_artifact(sim, new, "worker", BUNDLE)
    add_artifact(sim, new, "logs", {"x": "y"})
    found = await actions.artifacts_named(gh, REPO, "worker")
    assert {a.head_sha for a in found} == {SHA, OTHER}
    live, expired = actions.newest_for_sha(found, SHA)
    assert live is not None and live.id == fresh.id and expired is None
    data = await actions.download_artifact(gh, REPO, live.id)
    files = extract_zip(data)
    assert files["index.js"] == BUNDLE["index.js"].encode()
    assert actions_of(sim).blob_auth == [None]  # the blob host never saw the installation token
    downloads = sim.calls("GET", "*/actions/artifacts/*/zip")
    assert len(downloads) == 1 and downloads[0].status == 302


async def test_actions_read_permission_is_checked(github_sim, github_session):
    gh = await _gh(github_sim, github_session, permissions={"contents": "read", "metadata": "read",
                                                             "checks": "write"})
    with pytest.raises(Exception) as info:
        await actions.runs_for_sha(gh, REPO, SHA)
    assert "403" in repr(info.value) or getattr(info.value, "status_code", None) == 403


async def test_expired_artifact_download_is_refused(github_sim, github_session):
    gh = await _gh(github_sim, github_session)
    run = add_run(github_sim.sim, REPO, SHA, status="completed", conclusion="success")
    artifact = add_artifact(github_sim.sim, run, "worker", BUNDLE)
    expire(github_sim.sim, artifact)
    with pytest.raises(FlareshipError) as info:
        await actions.download_artifact(gh, REPO, artifact.id)
    assert info.value.code == "DEPLOY_001" and "expired" in info.value.message


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def _wait(gh, clock: _Clock, announced: list[WorkflowRun], *, timeout: float = 30, sleep=None) -> BuildWait:
    async def announce(run: WorkflowRun) -> None:
        announced.append(run)
    return BuildWait(gh=gh, repository=REPO, sha=SHA, build=BuildConfig(artifact="worker", timeout_minutes=timeout),
                     started_at=clock.now, clock=clock, announce=announce, sleep=sleep or clock.sleep, poll_seconds=10)


async def test_waits_while_the_run_is_in_progress_then_deploys_its_artifact(github_sim, github_session):
    gh = await _gh(github_sim, github_session)
    sim = github_sim.sim
    run = add_run(sim, REPO, SHA, status="queued")
    clock, announced = _Clock(), []

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            run.status = "in_progress"
        elif len(clock.sleeps) == 3:
            finish_run(sim, run, artifacts={"worker": BUNDLE})

    wait = _wait(gh, clock, announced, sleep=sleep)
    _record, data = await obtain(gh, REPO, await wait.artifact(), None)
    output = layout(extract_zip(data), wait.build, "index.js")
    assert [r.id for r in announced] == [run.id]  # announced once, with the run's URL
    assert announced[0].html_url.endswith(f"/{REPO}/actions/runs/{run.id}")
    assert len(clock.sleeps) == 3
    assert [m.name for m in output.modules] == ["index.js", "chunks/a.js", "index.js.map"]
    assert output.assets == {"index.html": b"<h1>hi</h1>", "img/logo.svg": b"<svg/>"}
    assert output.image is None


@pytest.mark.parametrize("case", ["no_artifact", "expired", "timeout", "no_run"])
async def test_a_build_that_cannot_deliver_fails_naming_the_run(github_sim, github_session, case):
    gh = await _gh(github_sim, github_session)
    sim = github_sim.sim
    clock, announced = _Clock(), []
    run = None
    if case == "no_artifact":
        run = add_run(sim, REPO, SHA, status="completed", conclusion="failure")
    elif case == "expired":
        run = add_run(sim, REPO, SHA, status="completed", conclusion="success")
        expire(sim, add_artifact(sim, run, "worker", BUNDLE))
    elif case == "timeout":
        run = add_run(sim, REPO, SHA, status="in_progress")
    with pytest.raises(FlareshipError) as info:
        await _wait(gh, clock, announced, timeout=1).artifact()
    error = info.value
    assert error.code == "DEPLOY_001" and error.step == "Validating configuration"
    if run is not None:
        assert f"/actions/runs/{run.id}" in error.message and error.details["runs"]
    if case == "timeout":
        assert sum(clock.sleeps) == pytest.approx(60)
    if case == "expired":
        assert "expired" in error.message


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, content in entries:
            archive.writestr(info, content)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../evil.js", "/etc/passwd", "a/../../b", "C:/x", "a\\..\\b"])
def test_zip_paths_that_escape_are_refused(name):
    with pytest.raises(FlareshipError) as info:
        extract_zip(_zip([(name, b"x")]))
    assert info.value.code == "DEPLOY_001" and "unsafe" in info.value.message


def test_zip_links_bombs_and_garbage_are_refused():
    link = zipfile.ZipInfo("link.js")
    link.external_attr = (0o120777 << 16)
    with pytest.raises(FlareshipError, match="link"):
        extract_zip(_zip([(link, b"/etc/passwd")]))
    bomb = _zip([("big.bin", b"\0" * 5_000_000)])
    assert len(bomb) < 20_000
    with pytest.raises(FlareshipError, match="inflates"):
        extract_zip(bomb, max_bytes=1_000_000)
    with pytest.raises(FlareshipError, match="more than 2 files"):
        extract_zip(_zip([("a", b""), ("b", b""), ("c", b"")]), max_files=2)
    with pytest.raises(FlareshipError, match="not a valid zip"):
        extract_zip(b"PK not really")


def test_layout_names_main_assets_and_image():
    files = extract_zip(make_zip(BUNDLE))
    out = layout(files, BuildConfig(artifact="w", assets="assets", image="image.tar"), "index.js")
    assert out.image == b"oci" and "image.tar" not in [m.name for m in out.modules]
    with pytest.raises(FlareshipError, match=r"no main\.js"):
        layout(files, BuildConfig(artifact="w"), "main.js")
    with pytest.raises(FlareshipError, match="no files under public"):
        layout(files, BuildConfig(artifact="w", assets="public"), "index.js")


def test_main_that_needs_a_build_is_refused_with_a_how_to():
    for main in ("src/index.ts", "src/app.tsx", "src/app.jsx", "worker.mts"):
        with pytest.raises(FlareshipError) as info:
            refuse_unbuilt(main, None)
        assert info.value.code == "DEPLOY_001" and "docs/build-workflow.md" in info.value.message
    source = b'import { Hono } from "hono";\nimport { DurableObject } from "cloudflare:workers";\n' \
             b'import x from "./local.js";\nimport "node:buffer";\n// import "commented";\n'
    assert bare_imports(source.decode()) == ["hono"]
    with pytest.raises(FlareshipError, match="hono"):
        refuse_unbuilt("index.js", source)
    refuse_unbuilt("index.js", b'import { a } from "./a.js";\nexport default {};\n')
    with pytest.raises(FlareshipError, match="Dockerfile"):
        refuse_dockerfile("./Dockerfile", "AppContainer")
    refuse_dockerfile("registry.example.com/app:1", "AppContainer")
    assert built_main_name("src/index.ts", BuildConfig(artifact="w")) == "index.js"
    assert built_main_name("src/index.ts", BuildConfig(artifact="w", main="worker.mjs")) == "worker.mjs"
