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


def _simple(kind: str) -> Callable[[_Reader, Any], list[dict[str, Any]]]:
    """`browser`, `version_metadata`: a single `{binding}` table."""
    def read(reader: _Reader, value: Any) -> list[dict[str, Any]]:
        if not isinstance(value, dict):
            reader.problems.append(f"{reader.key} must be a table with a binding")
            return []
        name = reader.text(reader.key, value, "binding")
        return [{"name": name, "type": kind}] if name else []
    return read


def _ai(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        reader.problems.append("ai must be a table with a binding")
        return []
    name = reader.text("ai", value, "binding")
    return [{"name": name, **_optional(value, "staging"), "type": "ai"}] if name else []


def _kv(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name, ns = reader.text(where, item, "binding"), reader.text(where, item, "id")
        if name and ns:
            out.append({"name": name, "type": "kv_namespace", "namespace_id": ns})
    return out


def _send_email(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name = reader.text(where, item, "name")
        if name:
            out.append({"name": name, "type": "send_email", **_optional(
                item, "destination_address", "allowed_destination_addresses", "allowed_sender_addresses")})
    return out


def _workflows(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        binding, name = reader.text(where, item, "binding"), reader.text(where, item, "name")
        class_name = reader.text(where, item, "class_name")
        if binding and name and class_name:
            out.append({"type": "workflow", "name": binding, "workflow_name": name, "class_name": class_name,
                        **_optional(item, "script_name")})
    return out


def _queues(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        reader.problems.append("queues must be a table of producers and consumers")
        return []
    producers = _Reader("queues.producers", reader.problems)
    out = []
    for where, item in producers.items(value.get("producers")):
        binding, queue = producers.text(where, item, "binding"), producers.text(where, item, "queue")
        if binding and queue:
            out.append({"type": "queue", "name": binding, "queue_name": queue, **_optional(item, "delivery_delay")})
    return out


def _r2(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name, bucket = reader.text(where, item, "binding"), reader.text(where, item, "bucket_name")
        if name and bucket:
            out.append({"name": name, "type": "r2_bucket", "bucket_name": bucket, **_optional(item, "jurisdiction")})
    return out


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


def _named(kind: str, field: str, target: str | None = None) -> Callable[[_Reader, Any], list[dict[str, Any]]]:
    """`{binding, <field>}` tables sent as `{name, type, <target or field>}`."""
    def read(reader: _Reader, value: Any) -> list[dict[str, Any]]:
        out = []
        for where, item in reader.items(value):
            name, ref = reader.text(where, item, "binding"), reader.text(where, item, field)
            if name and ref:
                out.append({"name": name, "type": kind, target or field: ref})
        return out
    return read


def _services(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name, service = reader.text(where, item, "binding"), reader.text(where, item, "service")
        if name and service:
            out.append({"name": name, "type": "service", "service": service,
                        **_optional(item, "environment", "entrypoint", "props")})
    return out


def _analytics(reader: _Reader, value: Any) -> list[dict[str, Any]]:
    out = []
    for where, item in reader.items(value):
        name = reader.text(where, item, "binding")
        if name:
            out.append({"name": name, "type": "analytics_engine", **_optional(item, "dataset")})
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
    "kv_namespaces": _kv,
    "send_email": _send_email,
    "workflows": _workflows,
    "queues": _queues,
    "r2_buckets": _r2,
    "d1_databases": _d1,
    "vectorize": _named("vectorize", "index_name"),
    "hyperdrive": _named("hyperdrive", "id"),
    "services": _services,
    "analytics_engine_datasets": _analytics,
    "dispatch_namespaces": _dispatch,
    "browser": _simple("browser"),
    "ai": _ai,
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
