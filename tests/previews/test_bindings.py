"""A Worker Preview's bindings through real webhooks: wrangler's previews block, own Durable Object storage, secrets."""

from __future__ import annotations

import httpx
import pytest

from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID
from tests.previews.conftest import BASE_SHA, REPOSITORY, config

PROD_KV, PREVIEW_KV = "a" * 32, "c" * 32
CODE = ('import { DurableObject } from "cloudflare:workers";\n'
        "export class Counter extends DurableObject {}\n"
        'export default { async fetch() { return new Response("%s"); } };\n')


def wrangler(secrets: str) -> str:
    return f"""\
name = "shop"
main = "dist/index.js"
compatibility_date = "2025-09-01"
[vars]
MODE = "production-like"
[[kv_namespaces]]
binding = "CACHE"
id = "{PROD_KV}"

[previews]
{secrets}
[previews.vars]
MODE = "preview"
[[previews.kv_namespaces]]
binding = "CACHE"
id = "{PREVIEW_KV}"
[[previews.durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
"""


@pytest.fixture
def previews_mode() -> str:
    return "previews"


async def _open(previews, number: int, secrets: str) -> dict:
    cf = previews.cloudflare_sim.sim
    cf.storage.add_kv_namespace(CF_ACCOUNT_ID, "cache", id=PROD_KV)
    cf.storage.add_kv_namespace(CF_ACCOUNT_ID, "cache-previews", id=PREVIEW_KV)
    cf.previews.base_configs[(CF_ACCOUNT_ID, "shop-staging")] = {
        "env": {"API_KEY": {"type": "secret_text", "text": "s3cret"}}}
    previews.sim.set_file(REPOSITORY, BASE_SHA, "wrangler.toml", wrangler(secrets))
    sha = previews.open_pr(number)
    previews.sim.set_file(REPOSITORY, sha, "dist/index.js", CODE % sha[:7])
    await previews.opened(number)
    [deployment] = await previews.deployments(number)
    assert deployment.status == "completed", deployment.error
    async with httpx.AsyncClient() as http:
        return (await http.get((await previews.record(number)).url)).json()


async def test_previews_block_bindings_own_storage_and_no_parent_secrets(previews):
    served = await _open(previews, 7, "")
    assert served["vars"] == {"MODE": "preview"}
    assert served["secrets"] == []  # the parent's (base config) secret is not given without `inherit`
    preview = previews.cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, "shop-staging", "pr-7")
    env = preview.deployments[-1].env
    assert env["CACHE"]["namespace_id"] == PREVIEW_KV
    namespace = served["durable_objects"]["COUNTER"]
    assert namespace and namespace == preview.namespaces["Counter"]
    sha = previews.open_pr(8)
    previews.sim.set_file(REPOSITORY, sha, "dist/index.js", CODE % sha[:7])
    await previews.opened(8)
    other = previews.cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, "shop-staging", "pr-8")
    assert other.namespaces["Counter"] != namespace  # every preview its own Durable Object storage


async def test_secrets_inherit_gives_the_preview_the_parents_secrets(previews):
    served = await _open(previews, 7, 'secrets = "inherit"\nobservability = { enabled = true }')
    assert served["secrets"] == ["API_KEY"] and served["vars"] == {"MODE": "preview"}
    [deployment] = await previews.deployments()
    logs = [line.message for line in await previews.services.engine.logs(deployment.id)]
    assert "s3cret" not in "\n".join(logs)
    preview = previews.cloudflare_sim.sim.previews.find(CF_ACCOUNT_ID, "shop-staging", "pr-7")
    assert preview.settings == {"observability": {"enabled": True}}  # the block's, sent on create


@pytest.mark.parametrize("previews_config", [config("script")])
async def test_script_mode_uses_the_block_too(previews, previews_config):
    previews.cloudflare_sim.sim.storage.add_kv_namespace(CF_ACCOUNT_ID, "cache-previews", id=PREVIEW_KV)
    previews.cloudflare_sim.sim.storage.add_kv_namespace(CF_ACCOUNT_ID, "cache", id=PROD_KV)
    previews.sim.set_file(REPOSITORY, BASE_SHA, "wrangler.toml", wrangler(""))
    sha = previews.open_pr(7)
    previews.sim.set_file(REPOSITORY, sha, "dist/index.js", CODE % sha[:7])
    await previews.opened(7)
    [deployment] = await previews.deployments()
    assert deployment.status == "completed", deployment.error
    script = previews.cloudflare_sim.sim.scripts[(CF_ACCOUNT_ID, "shop-staging-pr-7")]
    bindings = {b["name"]: b for b in script.version(script.live_version_id()).bindings}
    assert bindings["MODE"]["text"] == "preview" and bindings["CACHE"]["namespace_id"] == PREVIEW_KV
    assert bindings["COUNTER"]["type"] == "durable_object_namespace"
