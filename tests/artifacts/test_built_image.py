"""`build.image`: the artifact's OCI image layout (what `docker buildx build --output type=oci` writes)
is pushed to the account's registry tagged with the deployed SHA and replaces the container's image."""

from __future__ import annotations

import io
import tarfile

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.engine.oci_layout import read_layout
from bot.errors import FlareshipError
from bot.sim.cloudflare.app import REGISTRY
from bot.sim.github.actions import add_run, finish_run
from tests.artifacts.images import oci_layout_tar
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

SHA = "9" * 40
REPO = "acme/boxed"
CONFIG = """
app:
  name: boxed
  main: src/index.ts
  compatibility_date: "2025-06-01"
  container: {image: ./Dockerfile, class_name: AppContainer, max_instances: 1}
  build: {artifact: worker, image: image.tar}
environments:
  staging: {health_check: {path: /, timeout_seconds: 5}}
"""
ENTRY = ('import { DurableObject } from "cloudflare:workers";\n'
         "export class AppContainer extends DurableObject {}\n"
         "export default { fetch() { return new Response('ok'); } };\n")


@pytest.mark.parametrize("database_backend", ["sqlite"])
async def test_built_image_is_pushed_tagged_with_the_sha(sim_env, database, github_sim, github_session):
    image, manifest_digest = oci_layout_tar()
    seed_repo(github_sim, REPO, sha=SHA, files={".github/flareship.yml": CONFIG, "src/index.ts": "x",
                                                "Dockerfile": "FROM scratch\n"})
    finish_run(github_sim.sim, add_run(github_sim.sim, REPO, SHA),
               artifacts={"worker": {"index.js": ENTRY, "image.tar": image}})
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                       installation_id=INSTALLATION_ID), DeployOptions())
        d = await wait_final(engine, d.id)
        assert d.status == "completed", d.error
    finally:
        await engine.stop()
        await clients.aclose()
    registry = sim_env.runner.app[REGISTRY]
    repository = f"{ACCOUNT_ID}/boxed"
    assert registry.tags[repository][SHA] == manifest_digest
    images = sim_env.sim.container_images(sim_env.sim.script(ACCOUNT_ID, "boxed-staging"))
    assert list(images.values()) == [f"127.0.0.1:{sim_env.port}/{repository}@{manifest_digest}"]


def test_a_tampered_layout_is_refused():
    image, _ = oci_layout_tar()
    files = read_layout(image)
    assert "index.json" in files
    broken = io.BytesIO()
    with tarfile.open(fileobj=broken, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(FlareshipError, match="unsafe entry"):
        read_layout(broken.getvalue())
    with pytest.raises(FlareshipError, match="not a tar"):
        read_layout(b"garbage" * 100)
