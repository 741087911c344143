"""`previews:` in .github/flareship.yml, wrangler's `previews` block, and the preview AppSpec (pure)."""

from __future__ import annotations

import pytest

from bot.engine.appspec import resolve_repository_app
from bot.engine.config import parse_repo_config
from bot.engine.preview_app import preview_app
from bot.engine.preview_bindings import wrangler_preview_bindings
from bot.engine.preview_spec import credentials_environment, display_environment, preview_number
from bot.engine.wrangler import parse_wrangler
from bot.errors import FlareshipError

BASE = """
app:
  name: shop
  main: dist/index.js
  compatibility_date: "2025-09-01"
  vars: {MODE: staging}
  durable_objects: [Counter]
environments:
  staging: {}
  production: {required_permission: maintain}
"""


def config(previews: str = "") -> object:
    return parse_repo_config(BASE + previews)


def test_defaults_and_every_field():
    assert config().previews.enabled is False
    full = config("previews: {enabled: true, trigger: comment, from: production, max: 3, mode: script, "
                  "allow_forks: true}\n").previews
    assert (full.enabled, full.trigger, full.from_, full.max, full.mode, full.allow_forks) == \
        (True, "comment", "production", 3, "script", True)
    on = config("previews: {enabled: true}\n").previews
    assert (on.trigger, on.from_, on.max, on.mode, on.allow_forks) == ("push", "staging", 20, "previews", False)


@pytest.mark.parametrize("previews, field, words", [
    ("previews: {enabled: true, trigger: always}", "previews.trigger", "'push' or 'comment'"),
    ("previews: {enabled: true, mode: vm}", "previews.mode", "'previews' or 'script'"),
    ("previews: {enabled: true, max: 0}", "previews.max", "greater than or equal to 1"),
    ("previews: {enabled: true, from: qa}", "(root)", "previews.from names unknown environment 'qa'"),
    ("previews: {enabled: true, color: red}", "previews.color", "unknown field"),
    ("previews: {enabled: true}\nenvironments: {staging: {}, preview: {}}", "(root)", "taken by previews"),
])
def test_bad_previews_config_is_a_clear_deploy_001(previews, field, words):
    text = BASE.replace("environments:\n  staging: {}\n  production: {required_permission: maintain}\n", "") \
        if "environments:" in previews else BASE
    with pytest.raises(FlareshipError) as err:
        parse_repo_config(text + previews + "\n")
    assert err.value.code == "DEPLOY_001"
    assert err.value.details["field"] == field
    assert words in err.value.message


WRANGLER = """
name = "shop"
main = "dist/index.js"
compatibility_date = "2025-09-01"
[vars]
MODE = "production-like"
[[kv_namespaces]]
binding = "CACHE"
id = "prod-cache"

[previews]
secrets = "inherit"
observability = { enabled = true }
[previews.vars]
MODE = "preview"
[[previews.kv_namespaces]]
binding = "CACHE"
id = "preview-cache"
[[previews.durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"
"""


def test_wrangler_previews_block_gives_the_preview_its_own_bindings():
    data = parse_wrangler("wrangler.toml", WRANGLER)
    block = wrangler_preview_bindings(data, "staging")
    assert block is not None
    assert block.vars == {"MODE": "preview"}
    assert block.resource_bindings == [{"name": "CACHE", "type": "kv_namespace", "namespace_id": "preview-cache"}]
    assert block.durable_objects == [{"class_name": "Counter", "binding": "COUNTER"}]
    assert block.inherit_secrets is True and block.settings == {"observability": {"enabled": True}}
    spec = resolve_repository_app(config("previews: {enabled: true}\n"), "staging", repository="acme/shop",
                                  sha="abc", wrangler=data)
    preview = preview_app(spec, config("previews: {enabled: true}\n").previews, 17, block)
    assert preview.environment == "preview/pr-17" and preview.script_name == "shop-staging"
    assert preview.vars == {"MODE": "preview"}
    assert next(b for b in preview.bindings() if b["type"] == "kv_namespace")["namespace_id"] == "preview-cache"
    assert preview.preview is not None and preview.preview.inherit_secrets is True
    assert preview.preview.bindings_source == "wrangler.toml previews block"


def test_without_a_block_the_from_environments_bindings_and_no_secrets():
    data = parse_wrangler("wrangler.toml", WRANGLER.split("[previews]")[0])
    assert wrangler_preview_bindings(data, "staging") is None
    cfg = config("previews: {enabled: true, mode: script}\n")
    spec = resolve_repository_app(cfg, "staging", repository="acme/shop", sha="abc", wrangler=data)
    preview = preview_app(spec, cfg.previews, 5, None)
    assert preview.script_name == "shop-staging-pr-5"
    assert preview.vars == {"MODE": "staging"}  # .github/flareship.yml's app wins, as for staging
    assert preview.bindings() == spec.bindings()
    assert preview.preview is not None and preview.preview.inherit_secrets is False
    assert preview.workers_dev is True and preview.routes == [] and preview.queue_consumers == []


@pytest.mark.parametrize("block, words", [
    ('[previews]\nsecrets = "all"', "secrets must be"),
    ("[previews]\nrules = []", "not supported in previews: rules"),
    ('[[previews.queues.consumers]]\nqueue = "jobs"', "never consumes a queue"),
    ('[[previews.durable_objects.bindings]]\nclass_name = "Counter"', "name must be an identifier"),
])
def test_bad_previews_block_names_the_file(block, words):
    data = parse_wrangler("wrangler.toml", WRANGLER.split("[previews]")[0] + block + "\n")
    with pytest.raises(FlareshipError) as err:
        wrangler_preview_bindings(data, "staging")
    assert err.value.code == "DEPLOY_001" and "wrangler.toml" in err.value.message and words in err.value.message


def test_env_section_block_wins_for_the_from_environment():
    data = parse_wrangler("wrangler.json", '{"name": "shop", "previews": {"vars": {"A": "top"}},'
                                           ' "env": {"staging": {"previews": {"vars": {"A": "staging"}}}}}')
    block = wrangler_preview_bindings(data, "staging")
    assert block is not None and block.vars == {"A": "staging"}


CONTAINER = BASE.replace("  durable_objects: [Counter]\n",
                         "  durable_objects: [Counter]\n  container: {image: 'ghcr.io/acme/shop:{sha}', "
                         "class_name: AppContainer}\n")


def test_script_mode_names_its_worker_and_container_application():
    cfg = parse_repo_config(CONTAINER + "previews: {enabled: true, mode: script}\n")
    spec = resolve_repository_app(cfg, "staging", repository="acme/shop", sha="abc")
    preview = preview_app(spec, cfg.previews, 17, None)
    assert preview.script_name == "shop-staging-pr-17"
    assert preview.container is not None and preview.container.application_name == "shop-staging-pr-17-appcontainer"
    assert credentials_environment(preview.environment, preview.snapshot()) == "staging"
    assert display_environment("preview/pr-17") == "preview" and preview_number("preview/pr-17") == 17


def test_previews_mode_refuses_containers():
    cfg = parse_repo_config(CONTAINER + "previews: {enabled: true}\n")
    spec = resolve_repository_app(cfg, "staging", repository="acme/shop", sha="abc")
    with pytest.raises(FlareshipError) as err:
        preview_app(spec, cfg.previews, 17, None)
    assert err.value.code == "DEPLOY_001" and "previews.mode: script" in err.value.message
