"""Which wrangler keys Flareship honours, which change nothing it uploads, and which it refuses.

README.md "Deploying a real project": every key that changes the upload is honoured or refused, never
dropped. A refused key fails the deployment at step 1 with DEPLOY_001 naming every such key and its
file. Keys are those of wrangler's schema (https://github.com/cloudflare/workers-sdk,
packages/workers-utils/src/config/environment.ts and config.ts). Pure.
"""

from __future__ import annotations

from typing import Any

from bot.engine.wrangler import config_path, environment_config, top_level_only
from bot.errors import FlareshipError

#: Keys read into the upload, the Worker's settings or its triggers.
HONOURED = frozenset({
    "name", "main", "compatibility_date", "compatibility_flags", "vars", "durable_objects", "migrations",
    "kv_namespaces", "r2_buckets", "d1_databases", "services", "queues", "analytics_engine_datasets", "ai",
    "vectorize", "hyperdrive", "browser", "version_metadata", "send_email", "workflows", "dispatch_namespaces",
    "assets", "observability", "placement", "limits", "tail_consumers", "logpush", "upload_source_maps",
    "workers_dev", "preview_urls", "routes", "route", "triggers", "containers", "keep_vars",
})

#: Keys that change nothing Flareship uploads, and why (README "Deploying a real project").
NO_EFFECT: dict[str, str] = {
    "$schema": "editor schema",
    "env": "environments are applied",
    "dev": "local development only",
    "send_metrics": "wrangler telemetry",
    "dependencies_instrumentation": "wrangler telemetry",
    "account_id": "Flareship deploys to the account configured for the environment",
    "jsx_factory": "bundling option; Flareship uploads the built modules as they are",
    "jsx_fragment": "bundling option; Flareship uploads the built modules as they are",
    "tsconfig": "bundling option; Flareship uploads the built modules as they are",
    "minify": "bundling option; Flareship uploads the built modules as they are",
    "keep_names": "bundling option; Flareship uploads the built modules as they are",
    "no_bundle": "Flareship never bundles: it uploads the modules as they are",
    "find_additional_modules": "Flareship uploads every module beside the main module",
    "previews": "bindings of a pull request's preview only (bot/engine/preview_bindings.py), not of an environment",
    "usage_model": "deprecated and ignored by wrangler 4",
    "legacy_env": "only `true` (the default) is supported",
}

#: Bundling keys that `wrangler deploy --dry-run` applies in the CI build `app.build` names
#: (docs/build-workflow.md): honoured there, so accepted for an app deployed from its artifact.
BUILT_IN_CI = frozenset({"build", "define", "alias"})

#: Why a refused key cannot be honoured (the message names the key and its file).
REFUSED_REASON: dict[str, str] = {
    "build": "Flareship never runs repository code; build in CI and set app.build",
    "define": "needs bundling, which Flareship does not do; bundle in CI and set app.build",
    "alias": "needs bundling, which Flareship does not do; bundle in CI and set app.build",
    "rules": "module rules are not supported",
    "base_dir": "module naming from base_dir is not supported",
    "preserve_file_names": "not supported",
    "site": "Workers Sites are not supported; use assets",
    "legacy_assets": "not supported; use assets",
    "wasm_modules": "service-worker bindings are not supported",
    "text_blobs": "service-worker bindings are not supported",
    "data_blobs": "service-worker bindings are not supported",
    "pages_build_output_dir": "a Pages project, not a Worker",
    "node_compat": "removed in wrangler 4; use the nodejs_compat flag",
}


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def unsupported_keys(data: dict[str, Any], environment: str, *, built: bool = False) -> list[str]:
    """Every key (of the config `environment` uses) that would change the upload but is not honoured;
    `built`: the app is deployed from its CI artifact, whose build applied BUILT_IN_CI."""
    effective = {**environment_config(data, environment), **top_level_only(data)}
    out: list[str] = []
    envs = data.get("env")
    section = envs.get(environment) if isinstance(envs, dict) else None
    own: dict[str, Any] = section if isinstance(section, dict) else {}
    for key, value in effective.items():
        if key in HONOURED or key in NO_EFFECT or _empty(value) or (built and key in BUILT_IN_CI):
            continue
        if key == "legacy_env" and value is True:
            continue
        where = f"env.{environment}.{key}" if key in own else key
        out.append(where)
    return out


def refuse_unsupported(data: dict[str, Any], environment: str, extra: list[str] | None = None, *,
                       built: bool = False) -> None:
    """DEPLOY_001 naming every unsupported key (and nested field) and the file, when there is any."""
    keys = unsupported_keys(data, environment, built=built) + list(extra or [])
    if not keys:
        return
    path = config_path(data)
    reasons = sorted({f"{k.rsplit('.', 1)[-1]}: {REFUSED_REASON[k.rsplit('.', 1)[-1]]}" for k in keys
                      if k.rsplit(".", 1)[-1] in REFUSED_REASON})
    message = f"{path}: not supported by Flareship: {', '.join(keys)}"
    if reasons:
        message += f" ({'; '.join(reasons)})"
    raise FlareshipError("DEPLOY_001", message, details={"field": path, "unsupported": keys})
