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
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cachetools import LRUCache
from jsonschema import FormatChecker
from jsonschema.exceptions import best_match
from multidict import CIMultiDict, MultiDict
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

    def __deepcopy__(self, memo: dict) -> "_SharedFormatChecker":
        return self


class _CachedPathFinder(APICallPathFinder):
    """openapi-core recompiles every path template for each request; remember each URL's answer."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._found: LRUCache = LRUCache(maxsize=4096)

    def find(self, method: str, name: str):  # type: ignore[override]
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
    return OpenAPI.from_dict(spec, config=Config(spec_validator_cls=None, schema_validators_factory=factory,
                                                  path_finder_cls=_CachedPathFinder))


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


def _describe(error: BaseException) -> tuple[str, list[dict[str, Any]]]:
    """Human text and GitHub-style `errors` items from an openapi-core error chain."""
    messages, items = [], []
    current: BaseException | None = error
    while current is not None:
        for schema_error in getattr(current, "schema_errors", None) or []:
            if schema_error.context:
                # oneOf/anyOf: report the branch that came closest, as GitHub names the real field.
                schema_error = best_match(schema_error.context)
            field = "/".join(str(p) for p in schema_error.path) or None
            code = "missing_field" if schema_error.validator == "required" else "invalid"
            if schema_error.validator == "required":
                missing = next((name for name in schema_error.validator_value
                                if isinstance(schema_error.instance, dict) and name not in schema_error.instance), None)
                field = "/".join(filter(None, [field, missing]))
            items.append({"resource": "Request", "field": field, "code": code, "message": schema_error.message})
            messages.append(f"For '{field or 'body'}', {schema_error.message}.")
        current = current.__cause__
    if not messages:
        chain, current = [], error
        while current is not None:
            chain.append(str(current))
            current = current.__cause__
        messages.append(": ".join(chain))
        items.append({"resource": "Request", "code": "invalid", "message": messages[-1]})
    return " ".join(messages), items


def validate_request(template: PathTemplate, params: dict[str, str], method: str, query: MultiDict,
                     headers: CIMultiDict, body: bytes, content_type: str) -> Problem | None:
    """None when the request conforms; otherwise GitHub's 404/422 answer."""
    request = _Request(method, _validation_path(template, params), query, headers, body or None, content_type)
    error = next(iter(request_validator().iter_errors(request)), None)
    if error is None:
        return None
    kind = type(error).__name__
    if kind in ("PathNotFound", "OperationNotFound", "ServerNotFound"):
        return Problem(404, {"message": "Not Found", "documentation_url": DOCS})
    text, items = _describe(error)
    return Problem(422, {"message": f"Invalid request.\n\n{text}", "errors": items, "documentation_url": DOCS,
                         "status": "422"})
