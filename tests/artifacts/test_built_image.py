"""`build.image`: the artifact's OCI image layout (what `docker buildx build --output type=oci` writes)
is pushed to the account's registry tagged with the deployed SHA and replaces the container's image."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.engine.oci_layout import read_layout
from bot.errors import FlareshipError
from bot.sim.cloudflare.app import REGISTRY
from bot.sim.github.actions import add_run, finish_run
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


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layout_tar() -> tuple[bytes, str]:
    """A one-layer image in OCI layout, as a tar; returns (tar, manifest digest)."""
    layer = b"layer-bytes-" * 50
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                         "diff_ids": [_digest(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": _digest(layer), "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
         "size": len(manifest)}]}).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index),
                           *[(f"blobs/sha256/{_digest(b)[7:]}", b) for b in (layer, config, manifest)]]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), _digest(manifest)


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
