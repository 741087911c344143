"""Repository config, wrangler fallback and AppSpec naming rules (pure)."""

from __future__ import annotations

import pytest

from bot.engine.appspec import generated_worker, resolve_repository_app, resolve_seed_app, upper_snake
from bot.engine.config import parse_repo_config
from bot.engine.wrangler import find_wrangler, parse_wrangler, strip_jsonc
from bot.engine.wrangler_app import wrangler_app
from bot.errors import FlareshipError

EXAMPLE = """
app:
  name: my-app
  main: dist/index.js
  compatibility_date: "2025-09-01"
  container:
    image: ghcr.io/acme/my-app:{sha}
    class_name: AppContainer
    instance_type: basic
    max_instances: 5
  durable_objects: [AppContainer, {class_name: Counter, binding: COUNTS}]
  vars: {LOG_LEVEL: info, LIMITS: {max: 3}}
environments:
  staging:
    auto_deploy: true
    health_check: {path: /health, timeout_seconds: 60}
  production:
    required_permission: maintain
    require_approval: true
    require_checks: true
    after: staging
    allowed_users: []
    url: https://app.example.com
labels: {prefix: "deploy:"}
allow_forks: false
"""


def test_product_example_parses_and_resolves():
    config = parse_repo_config(EXAMPLE)
    assert config.required_permission("staging") == "write"
    assert config.required_permission("production") == "maintain"
    assert config.environments["staging"].auto_deploy
    assert config.labels.prefix == "deploy:"
    staging = resolve_repository_app(config, "staging", repository="acme/app", sha="abc123")
    assert staging.script_name == "my-app-staging"
    assert staging.container.image == "ghcr.io/acme/my-app:abc123"
    assert staging.container.application_name == "my-app-staging-appcontainer"
    assert staging.main_module == "index.js"
    assert staging.health_check_path == "/health"
    assert staging.bindings() == [  # wrangler's order: vars, then Durable Objects
        {"type": "plain_text", "name": "LOG_LEVEL", "text": "info"},
        {"type": "json", "name": "LIMITS", "json": {"max": 3}},
        {"type": "durable_object_namespace", "name": "APP_CONTAINER", "class_name": "AppContainer"},
        {"type": "durable_object_namespace", "name": "COUNTS", "class_name": "Counter"},
    ]
    production = resolve_repository_app(config, "production", repository="acme/app", sha="abc123")
    assert production.script_name == "my-app"
    assert production.url == "https://app.example.com"


def test_script_name_override_and_unquoted_date():
    config = parse_repo_config("app: {name: a, main: i.js, compatibility_date: 2025-01-02}\n"
                               "environments: {preview: {script_name: custom-name}}")
    spec = resolve_repository_app(config, "preview", repository="o/r", sha="s")
    assert spec.script_name == "custom-name"
    assert spec.compatibility_date == "2025-01-02"


@pytest.mark.parametrize("text,field", [
    ("app: {name: My_App}", "app.name"),
    ("app: {nme: x}", "app.nme"),
    ("app: {compatibility_date: '2025-13-01'}", "app.compatibility_date"),
    ("app: {container: {image: x, instance_type: huge}}", "app.container.instance_type"),
    ("environments: {staging: {required_permission: owner}}", "environments.staging.required_permission"),
    ("environments: {production: {after: qa}}", "(root)"),
    ("app: {durable_objects: ['not a class']}", "app.durable_objects.0.class_name"),
    ("environments: {staging: {health_check: {path: health}}}", "environments.staging.health_check.path"),
    ("- a list", "(root)"),
    ("app: [unclosed", "(file)"),
])
def test_invalid_config_names_the_field(text, field):
    with pytest.raises(FlareshipError) as info:
        parse_repo_config(text)
    assert info.value.code == "DEPLOY_001"
    assert info.value.status == 400
    assert info.value.details["field"] == field


def test_undefined_environment_is_deploy_001():
    config = parse_repo_config("app: {name: a, main: i.js, compatibility_date: '2025-01-01'}")
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(config, "qa", repository="o/r", sha="s")
    assert info.value.details["field"] == "environments.qa"


def test_wrangler_fills_missing_fields_only():
    toml = b"""
name = "from-wrangler"
main = "src/worker.js"
compatibility_date = "2024-05-01"
[vars]
MODE = "w"
[[durable_objects.bindings]]
name = "ROOM"
class_name = "Room"
[[containers]]
class_name = "Box"
image = "docker.io/acme/box:1"
max_instances = 2
"""
    wrangler = parse_wrangler("wrangler.toml", toml)
    fields = wrangler_app(wrangler, "staging").app_fields
    assert fields["durable_objects"] == [{"class_name": "Room", "binding": "ROOM"}]
    config = parse_repo_config("app: {name: mine}")
    spec = resolve_repository_app(config, "staging", repository="o/r", sha="s", wrangler=wrangler)
    assert spec.name == "mine" and spec.script_name == "mine-staging"
    assert spec.main_path == "src/worker.js" and spec.main_module == "worker.js"
    assert spec.compatibility_date == "2024-05-01"
    assert spec.vars == {"MODE": "w"}
    assert spec.container.class_name == "Box" and spec.container.max_instances == 2
    assert spec.container.instance_type == "lite"  # wrangler's default, not Flareship's
    assert [d.class_name for d in spec.durable_objects] == ["Box", "Room"]


def test_jsonc_comments_and_trailing_commas():
    text = '{\n // comment\n "name": "a//b", /* block */ "vars": {"X": "1",},\n "main": "i.js",\n}'
    assert parse_wrangler("wrangler.jsonc", text) == {"name": "a//b", "vars": {"X": "1"}, "main": "i.js"}
    assert strip_jsonc('["a,]",]') == '["a,]" ]'  # blanked, so lines and columns still count
    with pytest.raises(FlareshipError):
        parse_wrangler("wrangler.json", "{nope")


def test_jsonc_error_names_the_line_after_comments():
    text = '{\n /* a\n block\n comment */\n "name": "a",\n "main": nope\n}'
    with pytest.raises(FlareshipError) as info:
        parse_wrangler("wrangler.jsonc", text)
    assert "line 6" in info.value.message and info.value.details["line"] == 6
    assert "wrangler.jsonc" in info.value.message


def test_wrangler_file_precedence_json_then_jsonc_then_toml():
    files = {"wrangler.toml": b'name = "t"', "wrangler.jsonc": b'{"name": "c"}', "wrangler.json": b'{"name": "j"}'}
    assert find_wrangler(files)[0] == "wrangler.json"
    del files["wrangler.json"]
    assert find_wrangler(files)[1] == {"name": "c"}
    del files["wrangler.jsonc"]
    assert find_wrangler(files)[1].path == "wrangler.toml"


ENVS = b"""
name = "app"
main = "i.js"
compatibility_date = "2025-01-01"
compatibility_flags = ["nodejs_compat"]
workers_dev = false
routes = ["a.example.com/*"]
[vars]
TOP = "1"
[[kv_namespaces]]
binding = "KV"
id = "top"
[env.staging]
name = "app-stage"
[env.staging.vars]
ENV = "staging"
[env.production]
routes = [{ pattern = "example.com", custom_domain = true }]
[[env.production.kv_namespaces]]
binding = "KV"
id = "prod"
"""


def test_named_environment_inherits_only_inheritable_keys():
    wrangler = parse_wrangler("wrangler.toml", ENVS)
    config = parse_repo_config("")
    staging = resolve_repository_app(config, "staging", repository="o/r", sha="s", wrangler=wrangler)
    assert staging.script_name == "app-stage"  # env.staging.name names the script
    assert staging.compatibility_flags == ["nodejs_compat"] and staging.workers_dev is False
    assert [r.pattern for r in staging.routes] == ["a.example.com/*"]
    assert staging.vars == {"ENV": "staging"}  # vars are not inherited
    assert staging.resource_bindings == []  # neither are bindings
    production = resolve_repository_app(config, "production", repository="o/r", sha="s", wrangler=wrangler)
    assert production.script_name == "app"
    assert production.vars == {}
    assert production.resource_bindings == [{"name": "KV", "type": "kv_namespace", "namespace_id": "prod"}]
    assert [(r.pattern, r.custom_domain) for r in production.routes] == [("example.com", True)]
    other = resolve_repository_app(parse_repo_config("environments: {qa: {}}"), "qa", repository="o/r", sha="s",
                                   wrangler=wrangler)
    assert other.vars == {"TOP": "1"} and other.resource_bindings[0]["namespace_id"] == "top"


def test_flareship_app_wins_field_by_field():
    wrangler = parse_wrangler("wrangler.toml", ENVS)
    config = parse_repo_config("app: {main: dist/w.js, vars: {MINE: x}}")
    spec = resolve_repository_app(config, "qa", repository="o/r", sha="s", wrangler=wrangler,
                                  policy=parse_repo_config("environments: {qa: {}}"))
    assert spec.main_module == "w.js" and spec.vars == {"MINE": "x"}
    assert spec.compatibility_flags == ["nodejs_compat"]


def test_every_unsupported_key_is_named_with_its_file():
    text = b'name = "a"\nmain = "i.js"\ncompatibility_date = "2025-01-01"\n[define]\nX = "1"\n' \
           b'[[wasm_modules]]\n[env.staging.unsafe]\nbindings = [{name = "U", type = "x"}]\n' \
           b'[[env.staging.containers]]\nclass_name = "C"\nimage = "docker.io/a/b:1"\nconstraints = {tier = 1}\n'
    wrangler = parse_wrangler("wrangler.toml", text)
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(parse_repo_config(""), "staging", repository="o/r", sha="s", wrangler=wrangler)
    assert info.value.code == "DEPLOY_001"
    # `define` is not inherited, so it does not concern env.staging; the top-level-only keys do.
    assert info.value.details["unsupported"] == ["env.staging.unsafe", "wasm_modules", "containers[0].constraints"]
    assert info.value.message.startswith("wrangler.toml: not supported by Flareship: env.staging.unsafe")
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(parse_repo_config(""), "production", repository="o/r", sha="s", wrangler=wrangler)
    assert info.value.details["unsupported"] == ["define", "wasm_modules"]
    assert "needs bundling" in info.value.message


def test_containers_every_entry_and_both_instance_type_forms():
    text = b"""{"name": "c", "main": "i.js", "compatibility_date": "2025-01-01",
      "containers": [
        {"class_name": "A", "image": "docker.io/a/a:1", "instance_type": "standard-2", "rollout_step_percentage": 25},
        {"class_name": "B", "image": "docker.io/a/b:1", "name": "bee", "max_instances": 1,
         "instance_type": {"vcpu": 0.5, "memory_mib": 2048}}]}"""
    spec = resolve_repository_app(parse_repo_config(""), "staging", repository="o/r", sha="s",
                                  wrangler=parse_wrangler("wrangler.json", text))
    a, b = spec.containers
    assert (a.application_name, a.instance_type, a.max_instances, a.rollout_step_percentage) == \
        ("c-staging-a", "standard-2", 20, 25)
    assert b.application_name == "bee" and b.instance_type == {"vcpu": 0.5, "memory_mib": 2048, "disk_mb": 2000}
    assert spec.class_names == ["A", "B"]
    dockerfile = text.replace(b"docker.io/a/a:1", b"./Dockerfile")
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(parse_repo_config(""), "staging", repository="o/r", sha="s",
                               wrangler=parse_wrangler("wrangler.json", dockerfile))
    assert "Dockerfile" in info.value.message


def test_malformed_binding_names_every_problem():
    text = b'{"name": "a", "main": "i.js", "compatibility_date": "2025-01-01", "kv_namespaces": [{"binding": "K"}],' \
           b' "d1_databases": [{"database_id": "x"}]}'
    with pytest.raises(FlareshipError) as info:
        resolve_repository_app(parse_repo_config(""), "staging", repository="o/r", sha="s",
                               wrangler=parse_wrangler("wrangler.json", text))
    assert "kv_namespaces[0].id is required" in info.value.message
    assert "d1_databases[0].binding is required" in info.value.message


def test_seed_config_generates_container_worker():
    spec = resolve_seed_app({"appName": "shop", "containerImage": "ghcr.io/a/shop:1",
                             "environmentVars": {"A": "b"}}, "staging")
    assert spec.source == "generated" and spec.script_name == "shop-staging"
    assert spec.container.class_name == "AppContainer"
    assert [d.binding for d in spec.durable_objects] == ["APP_CONTAINER"]
    code = generated_worker(spec)
    assert "export class AppContainer extends DurableObject" in code
    assert "env.APP_CONTAINER.idFromName" in code
    with pytest.raises(FlareshipError) as info:
        resolve_seed_app({"appName": "Bad Name"}, "staging")
    assert info.value.details["field"] == "config.appName"
    with pytest.raises(FlareshipError):
        resolve_seed_app({"appName": "x", "unknown": 1}, "staging")


@pytest.mark.parametrize("name,binding", [("AppContainer", "APP_CONTAINER"), ("HTTPServer", "HTTP_SERVER"),
                                          ("Counter2", "COUNTER2"), ("counter", "COUNTER")])
def test_upper_snake(name, binding):
    assert upper_snake(name) == binding
