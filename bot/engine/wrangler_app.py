"""The wrangler config of one environment, mapped onto what Flareship deploys.

Two halves: `app_fields` fill the gaps of `.github/flareship.yml`'s `app` (which wins field by
field), and `extras` are the `AppSpec` fields only wrangler describes (bindings, migrations,
routes, crons, settings). Unsupported keys and fields are refused together (DEPLOY_001). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.engine.bindings import queue_consumers, resource_bindings
from bot.engine.migrations import parse_migrations
from bot.engine.wrangler import (
    config_path,
    environment_config,
    named_environment_name,
    top_level_only,
)
from bot.engine.wrangler_keys import refuse_unsupported
from bot.errors import FlareshipError

#: Container fields Flareship sends as wrangler does (workers-sdk packages/wrangler/src/containers/config.ts).
CONTAINER_FIELDS = frozenset({"class_name", "image", "max_instances", "instance_type", "name",
                              "rollout_step_percentage", "rollout_kind"})
#: wrangler's defaults for a container it deploys (containers/config.ts): lite, at most 20.
WRANGLER_CONTAINER_DEFAULTS = {"instance_type": "lite", "max_instances": 20}
#: Settings copied into the upload metadata as written (deploy-helpers create-worker-upload-form.ts).
SETTINGS = ("logpush", "placement", "tail_consumers", "limits", "observability")
ASSETS_FIELDS = frozenset({"directory", "binding", "html_handling", "not_found_handling", "run_worker_first"})


@dataclass
class WranglerApp:
    path: str
    app_fields: dict[str, Any] = field(default_factory=dict)
    #: `env.<name>.name`, which names the script.
    script_name: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def _durable_objects(env: dict[str, Any]) -> list[dict[str, Any]]:
    dos = env.get("durable_objects")
    bindings = dos.get("bindings") if isinstance(dos, dict) else None
    out = []
    for b in bindings if isinstance(bindings, list) else []:
        if isinstance(b, dict) and b.get("class_name"):
            item = {"class_name": b["class_name"], "binding": b.get("name")}
            item.update({k: b[k] for k in ("script_name", "environment") if b.get(k)})
            out.append(item)
    return out


def _containers(env: dict[str, Any], problems: list[str], unsupported: list[str]) -> list[dict[str, Any]]:
    containers = env.get("containers")
    if containers is None:
        return []
    if not isinstance(containers, list):
        problems.append("containers must be a list")
        return []
    out = []
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            problems.append(f"containers[{i}] must be a table")
            continue
        unsupported.extend(f"containers[{i}].{k}" for k in sorted(set(c) - CONTAINER_FIELDS))
        # An image that is a Dockerfile is refused unless app.build.image (bot/engine/build.py).
        out.append({**WRANGLER_CONTAINER_DEFAULTS, **{k: v for k, v in c.items() if k in CONTAINER_FIELDS}})
    return out


def _route(value: Any, where: str, problems: list[str]) -> dict[str, Any] | None:
    if isinstance(value, str) and value:
        return {"pattern": value}
    if isinstance(value, dict) and isinstance(value.get("pattern"), str) and value["pattern"]:
        route = {"pattern": value["pattern"]}
        for key in ("zone_id", "zone_name"):
            if isinstance(value.get(key), str):
                route[key] = value[key]
        if value.get("custom_domain") is True:
            route["custom_domain"] = True
        return route
    problems.append(f"{where} must be a pattern or a table with a pattern")
    return None


def _routes(env: dict[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    if env.get("route") is not None:
        route = _route(env["route"], "route", problems)
        return [route] if route else []
    routes = env.get("routes")
    if routes is None:
        return []
    if not isinstance(routes, list):
        problems.append("routes must be a list")
        return []
    return [r for i, item in enumerate(routes) if (r := _route(item, f"routes[{i}]", problems))]


def _crons(env: dict[str, Any], problems: list[str]) -> list[str] | None:
    triggers = env.get("triggers")
    if triggers is None:
        return None
    crons = triggers.get("crons") if isinstance(triggers, dict) else None
    if crons is None:
        return None
    if not isinstance(crons, list) or not all(isinstance(c, str) and c.strip() for c in crons):
        problems.append("triggers.crons must be a list of cron expressions")
        return None
    return list(crons)


def _flag(env: dict[str, Any], key: str, problems: list[str]) -> bool | None:
    value = env.get(key)
    if value is not None and not isinstance(value, bool):
        problems.append(f"{key} must be true or false")
        return None
    return value


def _assets(env: dict[str, Any], unsupported: list[str]) -> dict[str, Any] | None:
    assets = env.get("assets")
    if not isinstance(assets, dict) or not assets:
        return None
    unsupported.extend(f"assets.{k}" for k in sorted(set(assets) - ASSETS_FIELDS))
    return {k: v for k, v in assets.items() if k in ASSETS_FIELDS}


def wrangler_app(data: dict[str, Any], environment: str, *, built: bool = False) -> WranglerApp:
    """What the wrangler config says for `environment`; DEPLOY_001 for anything refused or malformed.

    `built`: the app is deployed from its CI artifact (`app.build`), so wrangler's own bundling
    keys were applied by the build and are not refused."""
    path = config_path(data)
    env = {**environment_config(data, environment), **top_level_only(data)}
    problems: list[str] = []
    unsupported: list[str] = []
    fields: dict[str, Any] = {k: env[k] for k in ("name", "main", "compatibility_date", "compatibility_flags",
                                                 "vars") if env.get(k) is not None}
    if isinstance(fields.get("main"), str):
        fields["main"] = fields["main"].removeprefix("./")
    dos = _durable_objects(env)
    if dos:
        fields["durable_objects"] = dos
    containers = _containers(env, problems, unsupported)
    extras: dict[str, Any] = {
        "wrangler_file": path,
        "resource_bindings": resource_bindings(env, path),
        "queue_consumers": queue_consumers(env, path),
        "migrations": parse_migrations(env.get("migrations"), path),
        "routes": _routes(env, problems),
        "crons": _crons(env, problems),
        "workers_dev": _flag(env, "workers_dev", problems),
        "preview_urls": _flag(env, "preview_urls", problems),
        "upload_source_maps": bool(_flag(env, "upload_source_maps", problems)),
        "keep_vars": bool(_flag(env, "keep_vars", problems)),
        "assets": _assets(env, unsupported),
        "containers": containers,
        "worker_settings": {k: env[k] for k in SETTINGS if env.get(k) is not None},
    }
    refuse_unsupported(data, environment, unsupported, built=built)
    if problems:
        raise FlareshipError("DEPLOY_001", f"{path}: {'; '.join(problems)}",
                             details={"field": path, "problems": problems})
    return WranglerApp(path, fields, named_environment_name(data, environment), extras)


def merge_app_fields(app: dict[str, Any], fallback: dict[str, Any]) -> dict[str, Any]:
    """`.github/flareship.yml`'s `app` wins field by field; wrangler fills the gaps (also inside `container`)."""
    merged = dict(fallback)
    for key, value in app.items():
        if value is None:
            continue
        if key == "container" and isinstance(value, dict) and isinstance(fallback.get("container"), dict):
            merged[key] = {**fallback["container"], **{k: v for k, v in value.items() if v is not None}}
        else:
            merged[key] = value
    return merged
