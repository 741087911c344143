"""The upload metadata wrangler would send for an `AppSpec`, plus what Flareship always adds.

The shape follows https://github.com/cloudflare/workers-sdk, packages/deploy-helpers/src/deploy/
helpers/create-worker-upload-form.ts (checked against wrangler 4.86.0's own uploads, recorded in
tests/fixtures/projects/*/expected-metadata.json). Flareship adds `keep_bindings` for secrets on
every upload (README.md "Deploying a real project") and its `annotations`. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from bot.engine.appspec import AppSpec

#: Secrets set with `wrangler secret put` or in the dashboard survive every Flareship upload.
KEEP_SECRETS = ("secret_text", "secret_key")
#: wrangler `keep_vars = true` also keeps the dashboard's vars.
KEEP_VARS = ("plain_text", "json")
#: The `assets.config` fields wrangler sends (create-worker-upload-form.ts `assetConfig`).
ASSET_CONFIG_FIELDS = ("html_handling", "not_found_handling", "run_worker_first")


class _Named(Protocol):
    name: str


def keep_bindings(spec: AppSpec) -> list[str]:
    """wrangler's order: vars first when `keep_vars`, then the secret kinds."""
    return [*(KEEP_VARS if spec.keep_vars else ()), *KEEP_SECRETS]


def assets_config(spec: AppSpec) -> dict[str, Any]:
    """The `assets.config` part of the metadata for the spec's `assets` (empty when none is set)."""
    return {k: spec.assets[k] for k in ASSET_CONFIG_FIELDS if spec.assets and spec.assets.get(k) is not None}


def worker_metadata(
    spec: AppSpec,
    *,
    migrations: Mapping[str, Any] | None = None,
    assets_jwt: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `metadata` part of the PUT, key for key as wrangler builds it.

    `assets_jwt` is the completion token of an assets upload session; with it the metadata carries
    `assets: {jwt, config}` (the assets upload itself is `bot.engine`'s assets step).
    """
    metadata: dict[str, Any] = {"main_module": spec.main_module, "bindings": spec.bindings()}
    if spec.containers:
        metadata["containers"] = [{"class_name": c.class_name} for c in spec.containers]
    metadata["compatibility_date"] = spec.compatibility_date
    metadata["compatibility_flags"] = list(spec.compatibility_flags)  # wrangler sends [] too
    if migrations:
        metadata["migrations"] = dict(migrations)
    metadata["keep_bindings"] = keep_bindings(spec)
    settings = spec.worker_settings
    for key in ("logpush", "placement", "tail_consumers", "limits"):
        if settings.get(key) is not None:
            metadata[key] = settings[key]
    if annotations:
        metadata["annotations"] = dict(annotations)
    if assets_jwt:
        metadata["assets"] = {"jwt": assets_jwt, "config": assets_config(spec)}
    if settings.get("observability") is not None:
        metadata["observability"] = settings["observability"]
    return metadata


def wrangler_view(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata without what Flareship adds on purpose (for comparing with wrangler's upload)."""
    return {k: v for k, v in metadata.items() if k not in ("keep_bindings", "annotations")}


def upload_modules(spec: AppSpec, modules: Iterable[_Named]) -> list[Any]:
    """Source maps are uploaded only with `upload_source_maps = true`, as wrangler does."""
    return [m for m in modules if spec.upload_source_maps or not m.name.endswith(".map")]
