"""wrangler config bindings -> upload metadata bindings, exactly as wrangler sends them.

Follows https://github.com/cloudflare/workers-sdk, packages/deploy-helpers/src/deploy/helpers/
create-worker-upload-form.ts (`createWorkerUploadForm`): the same `type` names, fields and order
(vars first, then KV, send_email, Durable Objects, workflows, queues, R2, D1, ...). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.errors import FlareshipError

#: The order wrangler appends binding kinds to `metadata.bindings`.
WRANGLER_ORDER = (
    "inherit", "plain_text", "json", "secret_text", "kv_namespace", "send_email", "durable_object_namespace",
    "workflow", "queue", "r2_bucket", "d1", "vectorize", "hyperdrive", "service", "analytics_engine",
    "dispatch_namespace", "browser", "ai", "version_metadata", "assets",
)
_RANK = {kind: i for i, kind in enumerate(WRANGLER_ORDER)}


def wrangler_order(bindings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bindings sorted the way wrangler emits them (stable within a kind)."""
    return sorted(bindings, key=lambda b: _RANK.get(str(b.get("type")), len(_RANK)))


def var_bindings(variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """String vars are `plain_text`, anything else `json` (all plain_text first, as wrangler does)."""
    text = [{"name": k, "type": "plain_text", "text": v} for k, v in variables.items() if isinstance(v, str)]
    other = [{"name": k, "type": "json", "json": v} for k, v in variables.items() if not isinstance(v, str)]
    return text + other


class _Reader:
    """Reads one list of binding tables, collecting every problem instead of stopping at the first."""

    def __init__(self, key: str, problems: list[str]) -> None:
        self.key = key
        self.problems = problems

    def items(self, value: Any) -> list[tuple[str, dict[str, Any]]]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(f"{self.key} must be a list")
            return []
        out = []
        for i, item in enumerate(value):
            where = f"{self.key}[{i}]"
            if not isinstance(item, dict):
                self.problems.append(f"{where} must be a table")
                continue
            out.append((where, item))
        return out

    def text(self, where: str, item: dict[str, Any], field: str, *, required: bool = True) -> str | None:
        value = item.get(field)
        if value is None:
            if required:
                self.problems.append(f"{where}.{field} is required")
            return None
        if not isinstance(value, str) or not value:
            self.problems.append(f"{where}.{field} must be a non-empty string")
            return None
        return value


def _optional(item: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {f: item[f] for f in fields if item.get(f) is not None}


def _simple(kind: str, *optional: str) -> Callable[[_Reader, Any], list[dict[str, Any]]]:
    """`ai`, `browser`, `version_metadata`: a single `{binding}` table (`optional` keys as written)."""
    def read(reader: _Reader, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, dict):
            reader.problems.append(f"{reader.key} must be a table with a binding")
            return []
        name = reader.text(reader.key, value, "binding")
        return [{"name": name, "type": kind, **_optional(value, *optional)}] if name else []
    return read


def _tables(kind: str, required: Mapping[str, str], *optional: str,
            name: str = "binding") -> Callable[[_Reader, Any], list[dict[str, Any]]]:
    """A list of `{<name>, <required>..., <optional>...}` tables sent as `{name, type, ...}`:
    `required` maps each wrangler key to its metadata key, `optional` keys are sent as written."""
    def read(reader: _Reader, value: Any) -> list[dict[str, Any]]:
        out = []
        for where, item in reader.items(value):
            binding = reader.text(where, item, name)
            refs = {target: reader.text(where, item, key) for key, target in required.items()}
            if binding and all(refs.values()):
                out.append({"name": binding, "type": kind, **refs, **_optional(item, *optional)})
        return out
    return read


def _queues(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        reader.problems.append("queues must be a table of producers and consumers")
        return []
    producers = _tables("queue", {"queue": "queue_name"}, "delivery_delay")
    return producers(_Reader("queues.producers", reader.problems), value.get("producers"))


def _d1(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name, db = reader.text(where, item, "binding"), reader.text(where, item, "database_id")
        if name and db:
            binding = {"name": name, "type": "d1", "id": db}
            if item.get("database_internal_env") is not None:
                binding["internalEnv"] = item["database_internal_env"]
            out.append(binding)
    return out


def _dispatch(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name, namespace = reader.text(where, item, "binding"), reader.text(where, item, "namespace")
        if not (name and namespace):
            continue
        binding: dict[str, Any] = {"name": name, "type": "dispatch_namespace", "namespace": namespace}
        outbound = item.get("outbound")
        if isinstance(outbound, dict) and outbound:
            binding["outbound"] = {"worker": _optional(outbound, "service", "environment")}
            if outbound.get("parameters") is not None:
                binding["outbound"]["params"] = [{"name": p} for p in outbound["parameters"]]
        out.append(binding)
    return out


#: wrangler config key -> reader of its metadata bindings (Durable Objects and vars are separate:
#: `.github/flareship.yml` may override them).
READERS: dict[str, Callable[[_Reader, Any], list[dict[str, Any]]]] = {
    "kv_namespaces": _tables("kv_namespace", {"id": "namespace_id"}),
    "send_email": _tables("send_email", {}, "destination_address", "allowed_destination_addresses",
                          "allowed_sender_addresses", name="name"),
    "workflows": _tables("workflow", {"name": "workflow_name", "class_name": "class_name"}, "script_name"),
    "queues": _queues,
    "r2_buckets": _tables("r2_bucket", {"bucket_name": "bucket_name"}, "jurisdiction"),
    "d1_databases": _d1,
    "vectorize": _tables("vectorize", {"index_name": "index_name"}),
    "hyperdrive": _tables("hyperdrive", {"id": "id"}),
    "services": _tables("service", {"service": "service"}, "environment", "entrypoint", "props"),
    "analytics_engine_datasets": _tables("analytics_engine", {}, "dataset"),
    "dispatch_namespaces": _dispatch,
    "browser": _simple("browser"),
    "ai": _simple("ai", "staging"),
    "version_metadata": _simple("version_metadata"),
}


def resource_bindings(env: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """The metadata bindings of every binding key in `env` except vars and Durable Objects.

    DEPLOY_001 naming the file and every malformed entry when one is missing a field wrangler
    requires (wrangler fails the same way before it uploads).
    """
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    for key, read in READERS.items():
        if env.get(key) is not None:
            out.extend(read(_Reader(key, problems), env[key]))
    assets = env.get("assets")
    if isinstance(assets, dict) and isinstance(assets.get("binding"), str):
        out.append({"name": assets["binding"], "type": "assets"})
    if problems:
        raise FlareshipError("DEPLOY_001", f"{source}: {'; '.join(problems)}", details={"field": source,
                                                                                      "problems": problems})
    return out


def queue_consumers(env: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """`queues.consumers` as written (each needs `queue`); wrangler attaches them after the upload."""
    queues = env.get("queues")
    if not isinstance(queues, dict) or queues.get("consumers") is None:
        return []
    problems: list[str] = []
    reader = _Reader("queues.consumers", problems)
    out = []
    for where, item in reader.items(queues["consumers"]):
        if reader.text(where, item, "queue"):
            out.append(dict(item))
    if problems:
        raise FlareshipError("DEPLOY_001", f"{source}: {'; '.join(problems)}", details={"field": source})
    return out
