"""Checks every request to the simulated Cloudflare against the Cloudflare OpenAPI files (the 2024
subset, and this project's Containers and Worker Previews documents).

The official 2024 spec lags the live API; the drift documented in bot/sim/specs/README.md is
patched in here (and only that), so the simulator accepts what Cloudflare accepts today:
`new_sqlite_classes`, `containers` in upload metadata, D1's `id`, the binding kinds wrangler
knows beyond the SDK's, named secrets.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.request.validators import V30RequestBodyValidator, V30RequestParametersValidator

SPECS = Path(__file__).resolve().parent.parent / "specs"
PREFIX = "/client/v4"


def _patch_cloudflare(spec: dict) -> dict:
    """The drift of bot/sim/specs/README.md ("Known drift"), patched so the simulator takes what
    the live API takes (and what wrangler sends), nothing more."""
    spec = copy.deepcopy(spec)
    spec["servers"] = [{"url": PREFIX}]
    schemas = spec["components"]["schemas"]
    # Path parameters and request bodies reuse read-only response schemas, which openapi-core
    # then refuses in a request (`workers_binding_name`: PUT secrets names the secret).
    for name in ("bill-subs-api_identifier", "iam_account_identifier", "workers_version_identifier",
                 "workers_binding_name"):
        schemas[name].pop("readOnly", None)
    for item in spec["paths"].values():  # every path parameter (KV, D1, queue identifiers too)
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                ref = param.get("schema", {}).get("$ref", "")
                if param.get("in") == "path" and ref.startswith("#/components/schemas/"):
                    schemas[ref.rsplit("/", 1)[-1]].pop("readOnly", None)
    step = schemas["workers_migration_step"]["properties"]
    for key in ("new_sqlite_classes", "deleted_sqlite_classes"):
        step.setdefault(key, {"type": "array", "items": {"type": "string"}})
    body = spec["components"]["requestBodies"]["workers_script_upload"]["content"]["multipart/form-data"]
    metadata = body["schema"]["oneOf"][0]["properties"]["metadata"]["properties"]
    # The 2024 base had both migration shapes under `oneOf` without additionalProperties, so
    # every migration matched both; the live API takes either shape.
    if "oneOf" in metadata["migrations"]:
        metadata["migrations"] = {"anyOf": metadata["migrations"]["oneOf"]}
    # wrangler 4 sends `containers` ({name?, class_name?}) and `code_update_strategy`, which the
    # SDK-derived metadata lacks (README: "It has no `containers`").
    metadata.setdefault("containers", {"type": "array", "items": {"type": "object", "properties": {
        "class_name": {"type": "string"}, "name": {"type": "string"}}}})
    metadata.setdefault("code_update_strategy", {"type": "string"})
    version_meta = spec["components"]["requestBodies"]["workers_version-post"]["content"]["multipart/form-data"]
    # The base commit (6c24002) declared the limits (message 50, tag 20 characters); the SDK-derived
    # copy lost them with the rest of its formats and limits. The live API enforces them.
    version_annotations = version_meta["schema"]["properties"]["metadata"]["properties"]["annotations"]
    version_annotations["properties"]["workers/message"]["maxLength"] = 50
    version_annotations["properties"]["workers/tag"]["maxLength"] = 20
    metadata["annotations"] = copy.deepcopy(version_annotations)
    metadata.setdefault("observability", {"type": "object"})
    metadata.setdefault("assets", {"type": "object"})
    for meta in (metadata, version_meta["schema"]["properties"]["metadata"]["properties"]):
        _patch_bindings(meta.get("bindings"))
    # wrangler sends `observability.logs` as written, e.g. `{invocation_logs: false}` without
    # `enabled` (recorded from wrangler 4.86.0, tests/fixtures/projects/environments); the SDK type
    # marks `enabled` required.
    logs = metadata.get("observability", {}).get("properties", {}).get("logs")
    if isinstance(logs, dict):
        logs.pop("required", None)
    _patch_queue_consumer_update(spec)
    return spec


def _patch_queue_consumer_update(spec: dict) -> None:
    """PUT `queues/{queue_id}/consumers/{consumer_id}` (queue-v2-update-queue-consumer), which
    wrangler's deploy sends for a Worker that already consumes the queue, is missing from the cut
    (README "Known drift"); it takes the POST's body."""
    consumers = spec["paths"].get("/accounts/{account_id}/queues/{queue_id}/consumers")
    path = "/accounts/{account_id}/queues/{queue_id}/consumers/{consumer_id}"
    if consumers is None or "put" in spec["paths"].get(path, {}):
        return
    put = copy.deepcopy(consumers["post"])
    put["operationId"] = "queue-v2-update-queue-consumer"
    put["parameters"] = [*put["parameters"], {"in": "path", "name": "consumer_id", "required": True,
                                              "schema": {"type": "string", "maxLength": 32}}]
    spec["paths"].setdefault(path, {})["put"] = put


#: Binding kinds wrangler sends that the SDK-derived metadata lacks (README "Known drift").
_EXTRA_BINDING_KINDS = ("worker_loader", "stream", "analytics", "agent_memory", "logfwdr", "websearch")


def _patch_bindings(bindings: dict | None) -> None:
    """wrangler sends a D1 binding's id as `id` (workers-sdk deploy-helpers
    create-worker-upload-form.ts), the SDK types call it `database_id`: the API takes both."""
    if not bindings:
        return
    kinds = bindings.get("items", {}).get("oneOf") or []
    for kind in kinds:
        if kind.get("properties", {}).get("type", {}).get("enum") == ["d1"]:
            kind["required"] = ["name", "type"]
            kind["anyOf"] = [{"required": ["id"]}, {"required": ["database_id"]}]
    known = {e for kind in kinds for e in kind.get("properties", {}).get("type", {}).get("enum", [])}
    for extra in _EXTRA_BINDING_KINDS:
        if extra not in known and kinds:
            kinds.append({"type": "object", "properties": {"name": {"type": "string"},
                                                           "type": {"type": "string", "enum": [extra]}},
                          "required": ["name", "type"]})


def _patch_containers(spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    spec["servers"] = [{"url": PREFIX}]
    return spec


@dataclass
class _Request:
    """The request protocol openapi-core expects (host_url keeps the port, unlike its aiohttp adapter)."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


@lru_cache(maxsize=1)
def spec_documents() -> tuple[tuple[OpenAPI, dict], ...]:
    """(containers, the 2024 Cloudflare subset, Worker Previews); `_metadata_schema` relies on the order."""
    # openapi-core's path templates log every pattern they compile at DEBUG; that is noise.
    logging.getLogger("parse").setLevel(logging.WARNING)
    cf = _patch_cloudflare(json.loads((SPECS / "cloudflare-openapi-subset.json").read_text()))
    containers = _patch_containers(json.loads((SPECS / "cloudflare-containers-subset.json").read_text()))
    # Written by this project like the containers document: no drift to patch but the server.
    previews = _patch_containers(json.loads((SPECS / "cloudflare-previews-subset.json").read_text()))
    return ((OpenAPI.from_dict(containers), containers), (OpenAPI.from_dict(cf), cf),
            (OpenAPI.from_dict(previews), previews))


@lru_cache(maxsize=1)
def _validators() -> tuple[tuple[V30RequestParametersValidator, V30RequestBodyValidator], ...]:
    """Built once: constructing openapi-core validators costs more than validating."""
    # The Worker Previews PATCHes are JSON merge patches (application/merge-patch+json, as wrangler sends them).
    extra: dict[str, Callable[[bytes], Any]] = {"application/merge-patch+json": json.loads}
    return tuple((V30RequestParametersValidator(api.spec),
                  V30RequestBodyValidator(api.spec, extra_media_type_deserializers=extra)) for api, _ in spec_documents())


@lru_cache(maxsize=1)
def _preview_metadata_schema() -> dict:
    """The `metadata` part of a Worker Preview deployment (`DeploymentMetadata`)."""
    _, previews = spec_documents()[2]
    return {"components": previews["components"], "$ref": "#/components/schemas/DeploymentMetadata"}


@lru_cache(maxsize=2)
def _metadata_schema(version_upload: bool = False) -> dict:
    """The `metadata` part's schema: a script upload's, or a version upload's."""
    _, cf = spec_documents()[1]
    if version_upload:
        body = cf["components"]["requestBodies"]["workers_version-post"]["content"]["multipart/form-data"]
        schema = copy.deepcopy(body["schema"]["properties"]["metadata"])
    else:
        body = cf["components"]["requestBodies"]["workers_script_upload"]["content"]["multipart/form-data"]
        schema = copy.deepcopy(body["schema"]["oneOf"][0]["properties"]["metadata"])
    return {"components": cf["components"], **schema}


class SpecViolation(Exception):
    """The request does not match the spec; `.reason` says where."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class UnknownRoute(SpecViolation):
    """No operation in either spec has this method and path."""


def _reason(exc: BaseException) -> str:
    parts = [str(exc)]
    cause = exc.__cause__ or exc.__context__
    depth = 0
    while cause is not None and depth < 4:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            parts.append("; ".join(e.message for e in schema_errors)[:500])
            break
        parts.append(str(cause)[:300])
        cause = cause.__cause__ or cause.__context__
        depth += 1
    return ": ".join(p for p in parts if p)


def validate_request(*, host_url: str, path: str, method: str, query, headers, content_type: str,
                     body: bytes | None, metadata: Any = None) -> None:
    """Raise SpecViolation unless (method, path) is in a spec and parameters/body match it.

    Validation is pure, so verdicts are memoised by request content: openapi-core's path
    matching costs milliseconds, and simulated deployments repeat the same calls a lot.
    """
    key = (method.upper(), path, tuple(sorted(query.items())), content_type.split(";")[0],
           hashlib.sha256(body).hexdigest() if body else None,
           json.dumps(metadata, sort_keys=True, default=str) if metadata is not None else None)
    verdict = _VERDICTS.get(key)
    if verdict is None:
        try:
            _validate(host_url=host_url, path=path, method=method, query=query, headers=headers,
                      content_type=content_type, body=body, metadata=metadata)
            verdict = _OK
        except SpecViolation as exc:
            verdict = exc
        _VERDICTS[key] = verdict
    if isinstance(verdict, SpecViolation):
        raise type(verdict)(verdict.reason)


_OK = object()
_VERDICTS: OrderedLRU = None  # type: ignore[assignment]  # set below


class OrderedLRU(dict):
    """A small bounded memo (oldest entries dropped first)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        if len(self) >= self.limit:
            del self[next(iter(self))]
        super().__setitem__(key, value)


_VERDICTS = OrderedLRU(8192)


def _validate(*, host_url: str, path: str, method: str, query, headers, content_type: str,
              body: bytes | None, metadata: Any = None) -> None:
    """The uncached check. Multipart uploads: parameters are checked by openapi-core, the `metadata` part (already
    parsed, passed as `metadata`) against the upload schema with jsonschema.
    """
    multipart = content_type.startswith("multipart/")
    request = _Request(host_url, path, method.lower(),
                       RequestParameters(query=query, header=headers, cookie={}),
                       content_type or "application/json", None if multipart else body)
    last: Exception | None = None
    for parameters, body_validator in _validators():
        try:
            parameters.validate(request)
            if not multipart and request.method in ("post", "put", "patch"):
                body_validator.validate(request)
            break
        except (PathNotFound, OperationNotFound) as exc:
            last = exc
            continue
        except Exception as exc:  # openapi-core raises a family of validation errors
            raise SpecViolation(_reason(exc)) from None
    else:
        raise UnknownRoute(f"{method.upper()} {path} is not in the Cloudflare specs ({type(last).__name__})")
    if multipart and metadata is not None:
        if "/workers/workers/" in path:
            schema = _preview_metadata_schema()
        else:
            schema = _metadata_schema(path.rstrip("/").endswith("/versions"))
        validator = jsonschema.Draft4Validator(schema)
        errors = sorted(validator.iter_errors(metadata), key=lambda e: list(e.path))
        if errors:
            raise SpecViolation("metadata: " + "; ".join(
                f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:5]))
