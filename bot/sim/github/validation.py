"""Check a request against the GitHub OpenAPI subset (openapi-core) and word failures like GitHub.

Two normalisations of the upstream document, both about tooling rather than GitHub's rules:
- the spec itself is not re-validated at load (its `format: uri` defaults of `""` trip the
  optional rfc3987 checker);
- a `discriminator` next to inline `oneOf` members is dropped: OpenAPI 3.0 defines it only for
  `$ref` members, and validators that honour it demand the property even where GitHub applies
  a default (POST check-runs without `status` is valid and means `queued`).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from cachetools import LRUCache
from jsonschema import FormatChecker
from jsonschema.exceptions import best_match
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiMapping
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.schemas.factories import SchemaValidatorsFactory
from openapi_schema_validator import OAS30WriteValidator

from bot.github.paths import PathTemplate, github_spec

DOCS = "https://docs.github.com/rest"
VALIDATION_HOST = "https://api.github.com"


def _drop_inline_discriminators(node: Any) -> None:
    if isinstance(node, dict):
        members = node.get("oneOf") or node.get("anyOf")
        if "discriminator" in node and members and not all("$ref" in m for m in members):
            del node["discriminator"]
        for value in node.values():
            _drop_inline_discriminators(value)
    elif isinstance(node, list):
        for value in node:
            _drop_inline_discriminators(value)


class _SharedFormatChecker(FormatChecker):
    """openapi-core deep-copies the format checker for every schema it validates (most of a
    request's validation time); nothing here adds formats to it, so one shared copy is safe."""

    def __deepcopy__(self, memo: dict) -> _SharedFormatChecker:
        return self


class _CachedPathFinder(APICallPathFinder):
    """openapi-core recompiles every path template for each request; remember each URL's answer."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._found: LRUCache = LRUCache(maxsize=4096)

    def find(self, method: str, name: str):
        key = (method, name)
        found = self._found.get(key)
        if found is None:
            found = self._found[key] = super().find(method, name)
        return found


@functools.cache
def openapi() -> OpenAPI:
    spec = copy.deepcopy(github_spec())
    _drop_inline_discriminators(spec)
    checker = _SharedFormatChecker()
    checker.checkers = dict(OAS30WriteValidator.FORMAT_CHECKER.checkers)
    factory = SchemaValidatorsFactory(OAS30WriteValidator, checker)
    # spec_validator_cls=None: the spec is GitHub's own and is not validated on each start
    config = Config(spec_validator_cls=None, schema_validators_factory=factory,  # type: ignore[arg-type]
                    path_finder_cls=_CachedPathFinder)
    return OpenAPI.from_dict(cast("dict[Hashable, Any]", spec), config=config)


@functools.cache
def request_validator():
    """Validation only: the simulator never needs openapi-core's unmarshalled values."""
    return openapi().request_validator


class _Request:
    """The openapi-core request protocol over what the simulator already parsed."""

    def __init__(self, method: str, path: str, query: MultiDict, headers: CIMultiDict, body: bytes | None,
                 content_type: str):
        self.method = method.lower()
        self.path = path
        self.host_url = VALIDATION_HOST
        self.body = body
        self.content_type = content_type
        self.parameters = RequestParameters(query=query, header=headers, cookie=MultiDict())


@dataclass
class Problem:
    status: int
    body: dict[str, Any]


def _validation_path(template: PathTemplate, params: dict[str, str]) -> str:
    """Rebuild the path with multi-segment values percent-encoded, so the spec's `{ref}` matches."""
    path = template.template
    for name, value in params.items():
        path = path.replace("{" + name + "}", quote(value, safe="") if name in template.multi_segment or "/" in value
                            else value)
    return path


def _schema_error_item(schema_error: Any) -> tuple[str, dict[str, Any]]:
    if schema_error.context:
        # oneOf/anyOf: report the branch that came closest, as GitHub names the real field.
        schema_error = best_match(schema_error.context)
    field = "/".join(str(p) for p in schema_error.path) or None
    code = "missing_field" if schema_error.validator == "required" else "invalid"
    if schema_error.validator == "required":
        missing = next((name for name in schema_error.validator_value
                        if isinstance(schema_error.instance, dict) and name not in schema_error.instance), None)
        field = "/".join(filter(None, [field, missing]))
    item = {"resource": "Request", "field": field, "code": code, "message": schema_error.message}
    return f"For '{field or 'body'}', {schema_error.message}.", item


def _describe(error: BaseException) -> tuple[str, list[dict[str, Any]]]:
    """Human text and GitHub-style `errors` items from an openapi-core error chain."""
    messages, items = [], []
    current: BaseException | None = error
    while current is not None:
        for schema_error in getattr(current, "schema_errors", None) or []:
            message, item = _schema_error_item(schema_error)
            messages.append(message)
            items.append(item)
        current = current.__cause__
    if not messages:
        chain, current = [], error
        while current is not None:
            chain.append(str(current))
            current = current.__cause__
        messages.append(": ".join(chain))
        items.append({"resource": "Request", "code": "invalid", "message": messages[-1]})
    return " ".join(messages), items


def _inline(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """A schema with its `#/components/schemas` references inlined (the request bodies have no cycles)."""
    if isinstance(node, list):
        return [_inline(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            raise ValueError(f"recursive schema {name}")
        return _inline(spec["components"]["schemas"][name], spec, (*seen, name))
    return {key: _inline(value, spec, seen) for key, value in node.items()}


@dataclass
class BodyRule:
    required: bool
    validator: Any  # an OAS 3.0 jsonschema validator, or None when the operation takes no body


@functools.cache
def body_rule(template: str, method: str) -> BodyRule:
    """How an operation's JSON body is checked.

    Bodies are validated by jsonschema with the OAS 3.0 dialect directly, not through
    openapi-core: its casting step treats parsed JSON like query strings (a dict passes as an
    array of its keys, the string "true" as a boolean) and crashes on some shapes.
    """
    spec = github_spec()
    operation = spec["paths"][template].get(method.lower(), {})
    request_body = operation.get("requestBody")
    if not request_body:
        return BodyRule(False, None)
    schema = request_body.get("content", {}).get("application/json", {}).get("schema", {})
    schema = _inline(copy.deepcopy(schema), spec)
    _drop_inline_discriminators(schema)
    return BodyRule(bool(request_body.get("required")),
                    OAS30WriteValidator(schema, format_checker=OAS30WriteValidator.FORMAT_CHECKER))


def _body_problem(template: str, method: str, body: bytes) -> Problem | None:
    rule = body_rule(template, method)
    if rule.validator is None:
        return None
    if not body:
        if not rule.required:
            return None
        message = "Invalid request.\n\nA request body is required."
        return Problem(422, {"message": message, "documentation_url": DOCS, "status": "422",
                             "errors": [{"resource": "Request", "field": None, "code": "missing",
                                         "message": "A request body is required"}]})
    try:
        document = json.loads(body)
    except ValueError:
        return Problem(400, {"message": "Problems parsing JSON", "documentation_url": DOCS})
    errors = sorted(rule.validator.iter_errors(document), key=lambda e: list(e.path))
    if not errors:
        return None
    described = [_schema_error_item(error) for error in errors[:5]]
    return Problem(422, {"message": "Invalid request.\n\n" + " ".join(m for m, _ in described),
                         "errors": [item for _, item in described], "documentation_url": DOCS, "status": "422"})


_BODY_ERRORS = ("RequestBody", "MediaType")


def validate_request(template: PathTemplate, params: dict[str, str], method: str, query: MultiMapping[str],
                     headers: CIMultiDictProxy[str], body: bytes, content_type: str) -> Problem | None:
    """None when the request conforms; otherwise GitHub's 404/422 answer.

    openapi-core checks the operation, path and query parameters; the body is checked separately.
    """
    problem = _parameters_problem(method, _validation_path(template, params), tuple(query.items()))
    return problem or _body_problem(template.template, method, body)


@functools.lru_cache(maxsize=4096)
def _parameters_problem(method: str, path: str, query: tuple[tuple[str, str], ...]) -> Problem | None:
    """The operation, path and query checks: a pure function of those, so repeats are remembered
    (the spec declares no header or cookie parameters for these operations)."""
    request = _Request(method, path, MultiDict(query), CIMultiDict(), None, "")
    try:
        errors = [e for e in request_validator().iter_errors(request)
                  if not any(marker in type(e).__name__ for marker in _BODY_ERRORS)]
    except Exception as exc:  # the validator itself failed: answer like GitHub, never a 500
        errors = [exc]
    if not errors:
        return None
    error = errors[0]
    kind = type(error).__name__
    if kind in ("PathNotFound", "OperationNotFound", "ServerNotFound"):
        return Problem(404, {"message": "Not Found", "documentation_url": DOCS})
    text, items = _describe(error)
    return Problem(422, {"message": f"Invalid request.\n\n{text}", "errors": items, "documentation_url": DOCS,
                         "status": "422"})
