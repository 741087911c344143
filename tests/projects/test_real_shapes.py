"""Project shapes modelled on github.com/cloudflare/templates, deployed by `/deploy staging`.

Each fixture under tests/fixtures/projects/ holds a repository (wrangler config, flareship.yml,
built modules) and `expected-metadata.json`: what wrangler 4.86.0 uploaded for it (see the
fixtures' README). Flareship's upload must equal it, plus the `keep_bindings` and `annotations`
Flareship always adds.
"""

from __future__ import annotations

import json

import pytest

from bot.engine.appspec import resolve_repository_app
from bot.engine.config import parse_repo_config
from bot.engine.metadata import worker_metadata, wrangler_view
from bot.engine.migrations import pending_migrations
from bot.engine.wrangler import find_wrangler
from bot.errors import FlareshipError
from tests.projects.shapes import ACC, FIXTURES, expected, project_files, seed_resources, uploads
from tests.workflows.conftest import BASE_SHA, CONFIG, HEAD_SHA, REPOSITORY

#: Shapes deployed end to end here; `container` is deployed from a CI artifact in test_built_shapes.py.
DEPLOYED = [
    "d1-typescript", "kv-todo", "durable-objects", "environments", "crons", "routes", "services-queues"]


async def deploy(workflow, name: str, *, policy: str = CONFIG) -> dict:
    sim = workflow.sim
    sim.add_commit(REPOSITORY, BASE_SHA, files={".github/flareship.yml": policy})
    sim.add_commit(REPOSITORY, HEAD_SHA, parent=BASE_SHA, files=project_files(name))
    seed_resources(workflow.cloudflare_sim.sim)
    await workflow.comment("/deploy staging")
    runs = workflow.check_runs(HEAD_SHA, "staging")
    assert runs, f"no check run; the PR says: {[c.body for c in workflow.sim.repo(REPOSITORY).comments.values()]}"
    return runs[-1]


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if (p / "expected-metadata.json").exists()))
def test_metadata_equals_wranglers(name):
    """Pure: the AppSpec's metadata, for a new script, is wrangler's (plus keep_bindings)."""
    files = project_files(name)
    config = parse_repo_config(files[".github/flareship.yml"])
    _, wrangler = find_wrangler(files)
    spec = resolve_repository_app(config, "staging", repository=REPOSITORY, sha=HEAD_SHA, wrangler=wrangler)
    migrations = pending_migrations(spec.migrations, None) if spec.migrations else None
    metadata = worker_metadata(spec, migrations=migrations)
    assert wrangler_view(metadata) == expected(name)
    assert metadata["keep_bindings"] == ["secret_text", "secret_key"]


@pytest.mark.parametrize("name", DEPLOYED)
async def test_deploys_by_comment_with_wranglers_upload(workflow, name):
    policy = CONFIG
    if name == "routes":  # the routes' hosts are not served here: probe a stand-in that is
        policy = CONFIG.replace("health_check: {path: /, timeout_seconds: 5}\n  production",
                                f"health_check: {{path: /healthz, timeout_seconds: 5}}\n"
                                f"    url: {str(workflow.client.make_url('/')).rstrip('/')}\n  production", 1)
    run = await deploy(workflow, name, policy=policy)
    assert run["conclusion"] == "success", run["output"]
    deployment = (await workflow.services.engine.get(run["external_id"]))
    sent = uploads(workflow.cloudflare_sim, deployment.script_name)
    assert len(sent) == 1
    assert wrangler_view(sent[0]) == expected(name)
    assert sent[0]["keep_bindings"] == ["secret_text", "secret_key"]
    cf = workflow.cloudflare_sim.sim
    script = cf.script(ACC, deployment.script_name)
    if name == "crons":
        assert [s["cron"] for s in cf.storage.schedules[(ACC, deployment.script_name)]] == \
            ["*/5 * * * *", "0 3 * * mon"]
    if name == "routes":
        assert not script.subdomain_enabled  # workers_dev = false
        assert [(r["pattern"], r["script"]) for r in cf.routes.values()] == \
            [("shop.example.com/api/*", "routed-worker-staging")]
        assert {d["hostname"] for d in cf.domains.values()} >= {"app.example.com"}
    else:
        assert script.subdomain_enabled and not script.previews_enabled
    if name == "durable-objects":
        assert script.migration_tag == "v3"
        assert sorted(ns.class_name for ns in cf.namespaces.values()) == ["Chat", "Tally"]
    if name == "services-queues":
        queue = cf.storage.queues[(ACC, "orders-queue")]
        assert [(c["script"], c["settings"]) for c in queue["consumers"]] == [
            ("orders-staging", {"batch_size": 10, "max_wait_time_ms": 30000, "max_retries": 3})]
    assert cf.creates["subdomain"] == 0  # never registered


async def test_binding_to_a_missing_resource_fails_at_step_3(workflow):
    sim = workflow.sim
    sim.add_commit(REPOSITORY, HEAD_SHA, parent=BASE_SHA, files=project_files("kv-todo"))
    await workflow.comment("/deploy staging")  # nothing seeded: the KV namespace does not exist
    run = workflow.check_runs(HEAD_SHA, "staging")[-1]
    assert run["conclusion"] == "failure"
    deployment = await workflow.services.engine.get(run["external_id"])
    assert deployment.error.code == "DEPLOY_011" and deployment.error.step == "Checking resources and quotas"
    assert "cf8aa41453dc4be09ff86530895773e1" in deployment.error.message and "TO_DO_LIST" in deployment.error.message
    assert workflow.cloudflare_sim.sim.script(ACC, deployment.script_name) is None


async def test_unsupported_keys_are_refused_by_name(workflow):
    sim = workflow.sim
    sim.add_commit(REPOSITORY, HEAD_SHA, parent=BASE_SHA, files=project_files("unsupported"))
    await workflow.comment("/deploy staging")
    text = json.dumps([c.body for c in workflow.sim.repo(REPOSITORY).comments.values()]) + json.dumps(
        [r["output"] for r in workflow.check_runs(HEAD_SHA)])
    assert "DEPLOY_001" in text and "define, build, unsafe" in text and "wrangler.toml" in text


async def test_a_secret_set_before_a_deploy_survives_it(workflow):
    run = await deploy(workflow, "kv-todo")
    assert run["conclusion"] == "success", run["output"]
    script = "to-do-list-kv-template-staging"
    cf = workflow.cloudflare_sim.sim
    cf.storage.put_secret(ACC, script, {"name": "API_KEY", "text": "s3cret", "type": "secret_text"})
    await workflow.comment("/deploy staging")
    assert len(uploads(workflow.cloudflare_sim, script)) == 2
    assert cf.storage.secret_names(ACC, script) == [{"name": "API_KEY", "type": "secret_text"}]
    assert {"name": "API_KEY", "type": "secret_text"} in cf.script(ACC, script).versions[-1].bindings


def test_only_migrations_after_the_scripts_tag_are_sent():
    _, wrangler = find_wrangler(project_files("durable-objects"))
    spec = resolve_repository_app(parse_repo_config(""), "staging", repository=REPOSITORY, sha=HEAD_SHA,
                                  wrangler=wrangler)
    assert pending_migrations(spec.migrations, "v1") == {
        "old_tag": "v1", "new_tag": "v3",
        "steps": [{"renamed_classes": [{"from": "Counter", "to": "Tally"}]},
                  {"deleted_classes": ["Scratch"], "new_sqlite_classes": ["Chat"]}]}
    assert pending_migrations(spec.migrations, "v3") is None
    with pytest.raises(FlareshipError):
        resolve_repository_app(parse_repo_config(""), "staging", repository=REPOSITORY, sha=HEAD_SHA,
                               wrangler={**wrangler, "migrations": [{"tag": "v1"}, {"tag": "v1"}]})


def test_every_fixture_file_is_tracked_by_git():
    """A fixture file git ignores exists only where it was written: a fresh clone (CI) lacks it."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (FIXTURES.parents[2] / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p) for p in FIXTURES.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=FIXTURES,
                             capture_output=True, text=True).stdout.split()
    assert not ignored, f"git ignores these fixture files: {ignored}"


async def test_changed_queue_consumer_settings_are_applied_as_wrangler_does(workflow):
    """wrangler PUTs the consumer of a Worker already consuming the queue; unchanged, nothing is sent."""
    run = await deploy(workflow, "services-queues")
    assert run["conclusion"] == "success", run["output"]
    cf = workflow.cloudflare_sim.sim
    files = project_files("services-queues")
    config = files["wrangler.jsonc"].decode().replace(
        '"max_batch_size": 10,', '"max_batch_size": 25, "dead_letter_queue": "orders-dlq",')
    assert "orders-dlq" in config
    for number, sha in enumerate(("d" * 40, "e" * 40)):
        workflow.sim.add_commit(REPOSITORY, sha, parent=HEAD_SHA, files={**files, "wrangler.jsonc": config.encode()})
        workflow.sim.repo(REPOSITORY).pulls[7].head_sha = sha
        puts = cf.count_requests("PUT", "/consumers/")
        await workflow.comment("/deploy staging")
        assert workflow.check_runs(sha, "staging")[-1]["conclusion"] == "success"
        [consumer] = cf.storage.queues[(ACC, "orders-queue")]["consumers"]
        assert consumer["settings"] == {"batch_size": 25, "max_wait_time_ms": 30000, "max_retries": 3}
        assert consumer["dead_letter_queue"] == "orders-dlq"
        assert cf.count_requests("PUT", "/consumers/") - puts == (1 if number == 0 else 0)  # unchanged: nothing sent
