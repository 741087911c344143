"""Deploying from a repository at a SHA: one tarball, config + wrangler fallback, modules by path."""

from __future__ import annotations

import pytest

from bot.engine import DeployOptions, PrepareRequest
from bot.engine.config import parse_repo_config
from bot.errors import FlareshipError
from tests.engine.harness import ACCOUNT_ID, make_engine, wait_final
from tests.plugins.github_sim import INSTALLATION_ID, make_github_app, seed_repo

SHA = "b" * 40

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"])


def _files(image: str) -> dict[str, str]:
    return {
        ".github/flareship.yml": f"""
app:
  main: dist/index.js
  container: {{image: "{image}", class_name: AppContainer, max_instances: 1}}
environments:
  staging: {{health_check: {{path: /health, timeout_seconds: 2}}}}
  production: {{required_permission: maintain}}
""",
        "wrangler.toml": 'name = "widgets"\ncompatibility_date = "2025-06-01"\n[vars]\nSOURCE = "wrangler"\n',
        "dist/index.js": 'import { helper } from "./lib/util.js";\n'
                         'import { DurableObject } from "cloudflare:workers";\n'
                         "export class AppContainer extends DurableObject {}\n"
                         "export default { fetch() { return new Response(helper()); } };\n",
        "dist/lib/util.js": "export function helper() { return 'ok'; }\n",
        "dist/notes.md": "not a module",
        "src/index.ts": "ignored",
    }


async def test_deploys_repository_at_sha(sim_env, database, github_sim, github_session):
    seed_repo(github_sim, "acme/widgets", sha=SHA, files=_files(sim_env.image()))
    github = make_github_app(github_session, github_sim)
    engine, clients = make_engine(sim_env.settings(database.url), database, github=github)
    await engine.start()
    try:
        req = PrepareRequest(environment="staging", repository="acme/widgets", sha=SHA,
                             installation_id=INSTALLATION_ID, trigger="comment", actor="dev", pull_request=7)
        d = await engine.request_deploy(req, DeployOptions())
        d = await wait_final(engine, d.id)
        assert d.status == "completed", d.error
        assert d.script_name == "widgets-staging" and d.target == "acme/widgets" and d.sha == SHA
        script = sim_env.sim.script(ACCOUNT_ID, "widgets-staging")
        version = script.version(script.live_version_id())
        assert sorted(version.modules) == ["index.js", "lib/util.js"]
        assert version.metadata["main_module"] == "index.js"
        assert version.metadata["compatibility_date"] == "2025-06-01"
        assert {"type": "plain_text", "name": "SOURCE", "text": "wrangler"} in version.metadata["bindings"]
        tarballs = github_sim.sim.calls("GET", "*tarball*")
        assert len(tarballs) == 1  # one download for prepare and all the steps
        # the policy config (default branch) decides environment settings, not the deployed SHA
        policy = parse_repo_config("environments: {staging: {script_name: widgets-pinned}}")
        pinned = await engine.prepare(PrepareRequest(environment="staging", repository="acme/widgets", sha=SHA,
                                                     installation_id=INSTALLATION_ID, repo_config=policy))
        assert pinned.script_name == "widgets-pinned"
    finally:
        await engine.stop()
        await clients.aclose()


async def test_bad_repository_config_is_deploy_001(sim_env, database, github_sim, github_session):
    files = _files(sim_env.image())
    files[".github/flareship.yml"] = "app: {main: dist/index.js, colour: blue}"
    seed_repo(github_sim, "acme/widgets", sha=SHA, files=files)
    engine, clients = make_engine(sim_env.settings(database.url), database,
                                  github=make_github_app(github_session, github_sim))
    try:
        with pytest.raises(FlareshipError) as info:
            await engine.prepare(PrepareRequest(environment="staging", repository="acme/widgets", sha=SHA,
                                                installation_id=INSTALLATION_ID))
        assert info.value.code == "DEPLOY_001" and info.value.details["field"] == "app.colour"
    finally:
        await clients.aclose()
