"""A deploy with static assets: the artifact's assets folder synced before the Worker, the completion
token and assets config in the upload metadata, the files served; a redeploy uploads no file."""

from __future__ import annotations

import httpx
import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.sim.cloudflare.assets import assets_of
from bot.sim.github.actions import add_run, finish_run
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

REPO = "acme/spa"
SHA1, SHA2 = "1" * 40, "2" * 40
WRANGLER = ('{"name": "spa", "main": "src/index.ts", "compatibility_date": "2025-06-01",\n'
            ' "assets": {"directory": "./dist/client", "binding": "ASSETS",\n'
            '            "not_found_handling": "single-page-application"}}\n')
CONFIG = "app:\n  build: {artifact: worker}\nenvironments:\n  staging: {health_check: {path: /api, timeout_seconds: 5}}\n"
BUNDLE = {"index.js": "export default { async fetch(r, env) { return env.ASSETS.fetch(r); } };\n",
          "assets/index.html": "<h1>spa</h1>", "assets/app.js": "console.log('spa')"}

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"])


async def _deploy(engine, sha: str):
    d = await engine.request_deploy(PrepareRequest(environment="staging", repository=REPO, sha=sha,
                                                   installation_id=INSTALLATION_ID), DeployOptions())
    return await wait_final(engine, d.id)


async def test_assets_are_uploaded_once_and_served(sim_env, database, github_sim, github_session):
    files = {".github/flareship.yml": CONFIG, "wrangler.json": WRANGLER, "src/index.ts": "export default {}"}
    seed_repo(github_sim, REPO, sha=SHA1, files=files)
    github_sim.sim.add_commit(REPO, SHA2, parent=SHA1, files=files)
    for sha in (SHA1, SHA2):
        finish_run(github_sim.sim, add_run(github_sim.sim, REPO, sha), artifacts={"worker": BUNDLE})
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    await engine.start()
    try:
        d = await _deploy(engine, SHA1)
        assert d.status == "completed", d.error
        script = sim_env.sim.script(ACCOUNT_ID, "spa-staging")
        metadata = script.version(script.live_version_id()).metadata
        assert metadata["assets"]["config"] == {"not_found_handling": "single-page-application"}
        assert metadata["assets"]["jwt"]
        assert {"name": "ASSETS", "type": "assets"} in metadata["bindings"]
        assert len(assets_of(sim_env.sim).uploaded) == 2
        url = d.urls["staging"]
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "/")).text == "<h1>spa</h1>"
            assert (await http.get(url + "/app.js")).text == "console.log('spa')"
            assert (await http.get(url + "/some/route")).text == "<h1>spa</h1>"  # SPA fallback
        again = await _deploy(engine, SHA2)
        assert again.status == "completed", again.error
        assert len(assets_of(sim_env.sim).uploaded) == 2  # unchanged assets: no file uploaded again
    finally:
        await engine.stop()
        await clients.aclose()
