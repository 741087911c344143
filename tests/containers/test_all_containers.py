"""Every entry of wrangler's `containers` is deployed, as wrangler does: each image copied into the
account's registry, the Worker uploaded first, then one container application per entry (its own
class_name, image, instance_type, max_instances, name), each updated and rolled out on its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.engine.metadata import wrangler_view
from bot.errors import FlareshipError
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "projects" / "container"
REPO = "acme/containers"
SHA = "a" * 40
NEXT_SHA = "b" * 40
REGISTRY_IMAGES = ("registry.cloudflare.com/0123456789abcdef0123456789abcdef/app:v1",
                   "registry.cloudflare.com/0123456789abcdef0123456789abcdef/sidecar:v1")
POLICY = """
app: {main: src/index.js}
environments:
  staging: {health_check: {path: /, timeout_seconds: 5}}
"""

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"])


def _files(app_image: str, sidecar_image: str) -> dict[str, str]:
    wrangler = (FIXTURE / "wrangler.jsonc").read_text()
    wrangler = wrangler.replace(REGISTRY_IMAGES[0], app_image).replace(REGISTRY_IMAGES[1], sidecar_image)
    return {".github/flareship.yml": POLICY, "wrangler.jsonc": wrangler,
            "src/index.js": (FIXTURE / "src" / "index.js").read_text()}


def _applications(sim) -> dict[str, dict]:
    return {a["name"]: a for a in sim.applications.values()}


async def test_every_container_gets_its_own_application(sim_env, database, github_sim, github_session):
    app_image, sidecar_image = sim_env.add_image("acme/app", "v1"), sim_env.add_image("acme/sidecar", "v1")
    seed_repo(github_sim, REPO, sha=SHA, files=_files(app_image, sidecar_image))
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    sim = sim_env.sim
    await engine.start()
    try:
        d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                       installation_id=INSTALLATION_ID), DeployOptions())
        d = await wait_final(engine, d.id)
        assert d.status == "completed", d.error
        script = sim.script(ACCOUNT_ID, "containers-template-staging")
        metadata = script.version(script.live_version_id()).metadata
        assert wrangler_view(metadata) == json.loads((FIXTURE / "expected-metadata.json").read_text())

        apps = _applications(sim)
        assert sorted(apps) == ["containers-template-staging-mycontainer", "sidecar-app"]
        main, sidecar = apps["containers-template-staging-mycontainer"], apps["sidecar-app"]
        namespaces = {ns.id: ns.class_name for ns in sim.namespaces.values()}
        assert namespaces[main["durable_objects"]["namespace_id"]] == "MyContainer"
        assert namespaces[sidecar["durable_objects"]["namespace_id"]] == "Sidecar"
        assert (main["max_instances"], sidecar["max_instances"]) == (10, 1)
        assert main["configuration"]["instance_type"] == "standard-1"
        assert (sidecar["configuration"]["vcpu"], sidecar["configuration"]["memory_mib"],
                sidecar["configuration"]["disk"]["size_mb"]) == (0.25, 1024, 4000)
        assert main["configuration"]["image"].endswith(f"/{ACCOUNT_ID}/app@{sim_env.images['acme/app:v1']}")
        assert sidecar["configuration"]["image"].endswith(f"/{ACCOUNT_ID}/sidecar@{sim_env.images['acme/sidecar:v1']}")
        state = (await engine.store.get(d.id)).state
        assert set(state["containers"]) == {"MyContainer", "Sidecar"}
        assert state["container_app_id"] == main["id"]  # the first is what the release records

        # A new sidecar image only: the Worker first, then only the sidecar's application rolls out.
        seed_repo(github_sim, REPO, sha=NEXT_SHA, files=_files(app_image, sim_env.add_image("acme/sidecar", "v2")))
        before = len(sim.requests)
        d2 = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=NEXT_SHA,
                                                        installation_id=INSTALLATION_ID), DeployOptions())
        d2 = await wait_final(engine, d2.id)
        assert d2.status == "completed", d2.error
        calls = [(m, p) for m, p, _status in sim.requests[before:]]
        upload = next(i for i, (m, p) in enumerate(calls)
                      if m == "PUT" and p.endswith("/workers/scripts/containers-template-staging"))
        changes = [i for i, (m, p) in enumerate(calls) if m in ("PATCH", "POST") and "/containers/applications" in p]
        assert changes and upload < min(changes)  # wrangler's order: the Worker version, then the applications
        rollouts = [r for r in sim.rollouts.values() if r["created_at"] >= sidecar["created_at"]]
        assert [r["application_id"] for r in rollouts] == [sidecar["id"]]
        assert rollouts[0]["progress"]["total_steps"] == 1  # one instance: a single 100% step
        apps = _applications(sim)
        assert apps["sidecar-app"]["configuration"]["image"].endswith(sim_env.images["acme/sidecar:v2"])
        assert apps["containers-template-staging-mycontainer"]["configuration"]["image"] == main["configuration"]["image"]
    finally:
        await engine.stop()
        await clients.aclose()


async def test_one_build_image_cannot_serve_two_dockerfiles(sim_env, database, github_sim, github_session):
    files = _files("./Dockerfile", "./sidecar/Dockerfile")
    files[".github/flareship.yml"] = POLICY.replace("app: {main: src/index.js}",
                                                    "app: {main: src/index.js, build: {artifact: w, image: image.tar}}")
    seed_repo(github_sim, REPO, sha=SHA, files=files)
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    try:
        with pytest.raises(FlareshipError) as info:
            await engine.prepare(PrepareRequest(environment="staging", repository=REPO, sha=SHA,
                                                installation_id=INSTALLATION_ID))
        assert info.value.code == "DEPLOY_001"
        assert "MyContainer, Sidecar" in info.value.message and "app.build.image" in info.value.message
    finally:
        await clients.aclose()


async def test_a_rollback_restores_every_containers_image(sim_env, database, github_sim, github_session):
    """From the release alone: the deployment that made it may have been pruned since."""
    first = (sim_env.add_image("acme/app", "v1"), sim_env.add_image("acme/sidecar", "v1"))
    second = (sim_env.add_image("acme/app", "v2"), sim_env.add_image("acme/sidecar", "v2"))
    seed_repo(github_sim, REPO, sha=SHA, files=_files(*first))
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    sim = sim_env.sim
    await engine.start()
    try:
        deployed, made = [], []
        for sha, images in ((SHA, first), (NEXT_SHA, second)):
            seed_repo(github_sim, REPO, sha=sha, files=_files(*images))
            d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=sha,
                                                           installation_id=INSTALLATION_ID), DeployOptions())
            d = await wait_final(engine, d.id)
            assert d.status == "completed", d.error
            deployed.append({name: app["configuration"]["image"] for name, app in _applications(sim).items()})
            made.append(d)
        assert deployed[0] != deployed[1] and set(deployed[0]) == {"containers-template-staging-mycontainer",
                                                                    "sidecar-app"}
        assert len(made[0].release.containers) == 2
        await engine.store.update(made[0].id, state={})  # the first deployment's state is gone
        rollback = await engine.rollback(d.id, reason="bad sidecar")
        rollback = await wait_final(engine, rollback.id)
        assert rollback.status == "completed", rollback.error
        assert {name: app["configuration"]["image"] for name, app in _applications(sim).items()} == deployed[0]
        restored = {c.image for c in rollback.release.containers}  # the rollback's own release: both again
        assert restored == set(deployed[0].values())
    finally:
        await engine.stop()
        await clients.aclose()
