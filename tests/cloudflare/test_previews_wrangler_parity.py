"""Flareship's Worker Previews requests against a recording of wrangler 4.164.0's `wrangler preview`
(tests/fixtures/previews/: the project's wrangler.jsonc and what wrangler sent for it).

The same three pushes of PR 17 (the second with a secret) go through the client to the simulator:
the metadata must equal wrangler's, part for part, and every call the client makes must be one
wrangler makes, with the same path (name percent-encoded, deployments under the Preview id)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.cloudflare import WorkerModule, build_preview_metadata, preview_migrations
from tests.plugins.cloudflare_sim import CF_ACCOUNT_ID

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "previews"
RECORDING = json.loads((FIXTURES / "wrangler-4.164.0-preview.json").read_text())["requests"]
MIGRATIONS = [{"tag": "v1", "new_sqlite_classes": ["Counter"]}]
MAIN = b"export class Counter {}\nexport default { fetch() { return new Response('pr code') } }\n"
BINDINGS = [{"type": "plain_text", "name": "LOG_LEVEL", "text": "debug"},
            {"type": "durable_object_namespace", "name": "COUNTER", "class_name": "Counter"}]


def shape(path: str, ids: dict[str, str]) -> str:
    for real, alias in ids.items():
        path = path.replace(real, alias)
    return path


async def test_three_pushes_send_what_wrangler_sends(cloudflare_client, cloudflare_sim):
    recorded_uploads = [r for r in RECORDING if r["method"] == "POST" and r["path"].endswith("/deployments")]
    assert len(recorded_uploads) == 3
    await cloudflare_client.create_parent_worker(CF_ACCOUNT_ID, "my-app")
    sent = []
    for push, (tag, secrets) in enumerate([("sha-abc", []), ("sha-def", [{"type": "secret_text", "name": "TOKEN",
                                                                           "text": "t0ken"}]), ("sha-ghi", [])]):
        preview = await cloudflare_client.ensure_preview(CF_ACCOUNT_ID, "my-app", "pr-17")
        latest = await cloudflare_client.latest_deployment(CF_ACCOUNT_ID, "my-app", preview)
        resent = {s["name"] for s in secrets}
        metadata = build_preview_metadata(
            main_module="index.js", compatibility_date="2025-09-01", compatibility_flags=["nodejs_compat"],
            bindings=[*BINDINGS, *secrets],
            inherit=[n for n in (latest.secret_names if latest else ()) if n not in resent],
            migrations=preview_migrations(MIGRATIONS, latest.migration_tag if latest else None),
            annotations={"workers/message": "PR code", "workers/tag": tag})
        assert metadata == recorded_uploads[push]["metadata"], push
        sent.append(await cloudflare_client.deploy_to_preview(CF_ACCOUNT_ID, "my-app", preview, metadata,
                                                              [WorkerModule("index.js", MAIN)]))
    assert sent[-1].env["TOKEN"] == "secret_text"  # inherited, and the simulator resolved it
    assert await cloudflare_client.delete_preview(CF_ACCOUNT_ID, "my-app", "pr-17") is True

    # Every call the client made is one wrangler made (Preview ids aliased on both sides).
    preview_id = sent[0].preview_id
    recorded_id = recorded_uploads[0]["path"].split("/previews/")[1].split("/")[0]
    ours = [(m, shape(p, {preview_id: "{id}"})) for m, p, _ in cloudflare_sim.sim.requests
            if "/previews" in p]
    theirs = {(r["method"], shape(r["path"], {recorded_id: "{id}"})) for r in RECORDING}
    assert ours and set(ours) <= theirs, set(ours) - theirs


def test_wrangler_sends_modules_as_files_parts_and_metadata_untyped():
    upload = next(r for r in RECORDING if r["method"] == "POST" and r["path"].endswith("/deployments"))
    metadata, *modules = upload["parts"]
    assert metadata == {"name": "metadata", "filename": None, "content_type": ""}
    assert modules[0] == {"name": "files", "filename": "index.js", "content_type": "application/javascript+module"}
    create = next(r for r in RECORDING if r["method"] == "POST" and r["path"].endswith("/previews"))
    assert create["json"] == {"name": "pr-17"}
