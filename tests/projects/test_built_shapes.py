"""Project shapes built by CI, deployed by `/deploy staging` through real webhooks: the deployment
waits for the workflow run (its check run says so, with the run's link, and the environment stays
free), the `workflow_run` webhook wakes it, and the upload is wrangler's."""

from __future__ import annotations

import asyncio

import pytest

from bot.engine.metadata import wrangler_view
from bot.sim.github.actions import add_run, finish_run, workflow_run_completed
from tests.projects.shapes import ACC, expected, project_files, seed_resources, uploads
from tests.workflows.conftest import BASE_SHA, CONFIG, HEAD_SHA, INSTALLATION_ID, REPOSITORY

BUILD_CONFIG = "app:\n  main: src/index.ts\n  build: {artifact: worker}\n" + CONFIG.split("\n", 4)[4]


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("workflow_settings", [{"build_poll_seconds": 3600}])  # only the webhook makes it look
async def test_typescript_d1_waits_for_its_build_then_deploys_the_artifact(workflow):
    sim = workflow.sim
    files = project_files("d1-typescript")
    bundle = {"index.js": files.pop("dist/index.js")}
    files[".github/flareship.yml"] = BUILD_CONFIG.encode()
    sim.add_commit(REPOSITORY, BASE_SHA, files={".github/flareship.yml": CONFIG})
    sim.add_commit(REPOSITORY, HEAD_SHA, parent=BASE_SHA, files=files)
    seed_resources(workflow.cloudflare_sim.sim)
    run = add_run(sim, REPOSITORY, HEAD_SHA, status="in_progress")
    await workflow.post("issue_comment", workflow.comment_payload("/deploy staging"))

    def waiting() -> bool:
        return any("Waiting for build" in (r["output"].get("text") or "") for r in workflow.check_runs(HEAD_SHA))
    await _until(waiting)
    [check_run] = workflow.check_runs(HEAD_SHA, "staging")
    assert f"/{REPOSITORY}/actions/runs/{run.id}" in check_run["output"]["text"]
    assert check_run["status"] == "queued"
    engine = workflow.services.engine
    deployment = await engine.get(check_run["external_id"])
    assert await engine.store.get_lease(deployment.target, "staging") is None

    finish_run(sim, run, artifacts={"worker": bundle})
    await workflow.post("workflow_run", workflow_run_completed(sim, run, installation_id=INSTALLATION_ID,
                                                               web_root=workflow.github_sim.url))
    await workflow.settle()
    check_run = workflow.check_runs(HEAD_SHA, "staging")[-1]
    assert check_run["conclusion"] == "success", check_run["output"]
    sent = uploads(workflow.cloudflare_sim, deployment.script_name)
    assert len(sent) == 1 and wrangler_view(sent[0]) == expected("d1-typescript")
    assert len(sim.calls("GET", "*/actions/artifacts/*/zip")) == 1
    assert workflow.cloudflare_sim.sim.script(ACC, deployment.script_name).subdomain_enabled


async def test_containers_template_deploys_its_built_image_through_webhooks(workflow):
    """containers-template's shape: MyContainer built from ./Dockerfile into the artifact (an OCI
    layout), Sidecar from an image already in the account's registry; `/deploy staging` uploads the
    Worker, pushes the built image tagged with the SHA and updates one application per container."""
    from bot.sim.registry import build_test_image, seed_image
    from tests.artifacts.images import oci_layout_tar

    sim, cf = workflow.sim, workflow.cloudflare_sim
    files = project_files("container")
    bundle = {"index.js": files.pop("src/index.js")}
    sidecar = f"{cf.registry_host}/{ACC}/sidecar:v1"
    sidecar_digest = seed_image(cf.registry, f"{ACC}/sidecar", "v1", build_test_image("sidecar", layer_bytes=256))
    wrangler = files["wrangler.jsonc"].decode()
    wrangler = wrangler.replace(f"registry.cloudflare.com/{ACC}/app:v1", "./Dockerfile")
    files["wrangler.jsonc"] = wrangler.replace(f"registry.cloudflare.com/{ACC}/sidecar:v1", sidecar).encode()
    files[".github/flareship.yml"] = ("app:\n  main: src/index.ts\n  build: {artifact: worker, image: image.tar}\n"
                                      + CONFIG.split("\n", 4)[4]).encode()
    files["src/index.ts"] = b"// built by CI into index.js\n"
    files["Dockerfile"] = b"FROM scratch\n"
    layout, manifest_digest = oci_layout_tar()
    sim.add_commit(REPOSITORY, BASE_SHA, files={".github/flareship.yml": CONFIG})
    sim.add_commit(REPOSITORY, HEAD_SHA, parent=BASE_SHA, files=files)
    finish_run(sim, add_run(sim, REPOSITORY, HEAD_SHA), artifacts={"worker": {**bundle, "image.tar": layout}})

    await workflow.comment("/deploy staging")
    check_run = workflow.check_runs(HEAD_SHA, "staging")[-1]
    assert check_run["conclusion"] == "success", check_run["output"]
    deployment = await workflow.services.engine.get(check_run["external_id"])
    sent = uploads(cf, deployment.script_name)
    assert len(sent) == 1 and wrangler_view(sent[0]) == expected("container")
    assert sent[0]["keep_bindings"] == ["secret_text", "secret_key"]
    assert cf.registry.tags[f"{ACC}/containers-template"][HEAD_SHA] == manifest_digest  # tagged with the SHA
    apps = {a["name"]: a for a in cf.sim.applications.values()}
    assert sorted(apps) == ["containers-template-staging-mycontainer", "sidecar-app"]
    assert apps["containers-template-staging-mycontainer"]["configuration"]["image"] == \
        f"{cf.registry_host}/{ACC}/containers-template@{manifest_digest}"
    assert apps["sidecar-app"]["configuration"]["image"] == f"{cf.registry_host}/{ACC}/sidecar@{sidecar_digest}"
