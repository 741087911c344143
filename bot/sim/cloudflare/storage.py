"""Simulated resources a Worker binds to (KV, D1, R2, queues) and its secrets, schedules and consumers.

State and rules only (no HTTP; `storage_routes.py` serves it). A binding to a resource that does
not exist is refused as Cloudflare refuses it: the KV answer is the one wrangler users see
("KV namespace '...' is not valid. Please verify the namespace_id in your configuration.",
code 10042, github.com/cloudflare/workers-sdk/issues/14249); D1, R2 and queues answer in the
same form with the simulator's own codes. A PUT without `keep_bindings` drops the secrets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from bot.sim.cloudflare.state import SimError

#: Binding type -> (the field naming the resource, the error code, the resource's name in messages).
BINDING_RESOURCES = {
    "kv_namespace": ("namespace_id", 10042, "KV namespace"),
    "d1": ("id", 10181, "D1 database"),
    "r2_bucket": ("bucket_name", 10085, "R2 bucket"),
    "queue": ("queue_name", 11003, "Queue"),
}
SECRET_TYPES = ("secret_text", "secret_key")


@dataclass
class StorageSim:
    """Per-account resources; keys are (account_id, id or name)."""

    kv: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    d1: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    r2: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    queues: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: (account, script) -> secret name -> binding (as the Worker sees it, value included).
    secrets: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    schedules: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    # -- seeding --------------------------------------------------------------------------

    def add_kv_namespace(self, account_id: str, title: str, id: str | None = None) -> dict[str, Any]:
        ns_id = id or uuid.uuid4().hex
        ns = {"id": ns_id, "title": title, "supports_url_encoding": True}
        self.kv[(account_id, ns_id)] = ns
        return ns

    def add_d1_database(self, account_id: str, name: str, uuid_: str | None = None) -> dict[str, Any]:
        db_id = uuid_ or str(uuid.uuid4())
        db = {"uuid": db_id, "name": name, "version": "production",
              "created_at": "2025-01-01T00:00:00Z", "num_tables": 0, "file_size": 0}
        self.d1[(account_id, db_id)] = db
        return db

    def add_r2_bucket(self, account_id: str, name: str) -> dict[str, Any]:
        bucket = {"name": name, "creation_date": "2025-01-01T00:00:00Z", "location": "WNAM"}
        self.r2[(account_id, name)] = bucket
        return bucket

    def add_queue(self, account_id: str, name: str) -> dict[str, Any]:
        queue = {"queue_id": uuid.uuid4().hex, "queue_name": name, "created_on": "2025-01-01T00:00:00Z",
                 "modified_on": "2025-01-01T00:00:00Z", "producers": [], "consumers": []}
        self.queues[(account_id, name)] = queue
        return queue

    # -- listings ---------------------------------------------------------------------------

    def list_of(self, kind: str, account_id: str) -> list[dict[str, Any]]:
        table = {"kv": self.kv, "d1": self.d1, "r2": self.r2, "queues": self.queues}[kind]
        return [dict(v, consumers=list(v.get("consumers", []))) if kind == "queues" else dict(v)
                for (acc, _), v in table.items() if acc == account_id]

    def queue_by_id(self, account_id: str, queue_id: str) -> dict[str, Any]:
        for (acc, _), queue in self.queues.items():
            if acc == account_id and queue["queue_id"] == queue_id:
                return queue
        raise SimError(404, 11000, f"Queue {queue_id} does not exist")

    def add_consumer(self, account_id: str, queue_id: str, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue_by_id(account_id, queue_id)
        script = body.get("script_name") or body.get("script")
        if not script:
            raise SimError(400, 11001, "a worker consumer needs script_name")
        if any(c.get("script") == script for c in queue["consumers"]):
            raise SimError(409, 11004, f"Worker {script} already consumes queue {queue['queue_name']}")
        consumer = {"consumer_id": uuid.uuid4().hex, "type": body.get("type", "worker"), "script": script,
                    "queue_name": queue["queue_name"], "settings": dict(body.get("settings") or {}),
                    "dead_letter_queue": body.get("dead_letter_queue"), "created_on": "2025-01-01T00:00:00Z"}
        queue["consumers"].append(consumer)
        return consumer

    def update_consumer(self, account_id: str, queue_id: str, consumer_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT replaces a consumer's settings and dead-letter queue (what is left out is cleared)."""
        queue = self.queue_by_id(account_id, queue_id)
        consumer = next((c for c in queue["consumers"] if c["consumer_id"] == consumer_id), None)
        if consumer is None:
            raise SimError(404, 11005, f"Consumer {consumer_id} does not exist")
        script = body.get("script_name") or body.get("script")
        if script and script != consumer.get("script"):
            raise SimError(400, 11001, "a consumer's script cannot be changed")
        consumer["settings"] = dict(body.get("settings") or {})
        consumer["dead_letter_queue"] = body.get("dead_letter_queue")
        return consumer

    # -- uploads ------------------------------------------------------------------------------

    def check_binding(self, account_id: str, binding: dict[str, Any]) -> None:
        """Refuse a binding whose KV namespace, D1 database, R2 bucket or queue is not on the account."""
        kind = binding.get("type")
        if kind not in BINDING_RESOURCES:
            return
        key, code, what = BINDING_RESOURCES[kind]
        ref = binding.get(key) or (binding.get("database_id") if kind == "d1" else None)
        if not ref:
            raise SimError(400, 10021, f"binding {binding.get('name')} of type {kind} needs {key}")
        table = {"kv_namespace": self.kv, "d1": self.d1, "r2_bucket": self.r2, "queue": self.queues}[kind]
        if (account_id, ref) not in table:
            raise SimError(400, code, f"{what} '{ref}' is not valid. Please verify the {key} in your configuration.")

    def after_upload(self, account_id: str, script: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply `keep_bindings` to the script's secrets; the secret bindings the new version carries."""
        kept = set(metadata.get("keep_bindings") or [])
        secrets = self.secrets.setdefault((account_id, script), {})
        for name in [n for n, b in secrets.items() if b["type"] not in kept]:
            del secrets[name]
        for binding in metadata.get("bindings") or []:
            if binding.get("type") in SECRET_TYPES:
                secrets[binding["name"]] = dict(binding)
        return [dict(b) for b in secrets.values()]

    def put_secret(self, account_id: str, script: str, body: dict[str, Any]) -> dict[str, Any]:
        name, kind = body.get("name"), body.get("type", "secret_text")
        if not isinstance(name, str) or not name:
            raise SimError(400, 10021, "a secret needs a name")
        if kind not in SECRET_TYPES:
            raise SimError(400, 10021, f"unknown secret type {kind!r}")
        if kind == "secret_text" and not isinstance(body.get("text"), str):
            raise SimError(400, 10021, "a secret_text secret needs text")
        self.secrets.setdefault((account_id, script), {})[name] = {k: v for k, v in body.items() if k != "name"} | {
            "name": name, "type": kind}
        return {"name": name, "type": kind}

    def secret_names(self, account_id: str, script: str) -> list[dict[str, Any]]:
        return [{"name": n, "type": b["type"]} for n, b in self.secrets.get((account_id, script), {}).items()]

    def forget_script(self, account_id: str, script: str) -> None:
        self.secrets.pop((account_id, script), None)
        self.schedules.pop((account_id, script), None)
