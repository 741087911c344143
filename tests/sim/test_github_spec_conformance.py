"""The simulator's spec check accepts every body the spec allows and refuses ones it does not.

Bodies are generated from the spec's own request schemas (hypothesis-jsonschema), so a too
strict or too lax validator (e.g. the `discriminator` GitHub's description carries) shows up.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from bot.github.paths import github_spec, match_path
from bot.sim.github.validation import validate_request

OPERATIONS = [
    ("POST", "/app/installations/12/access_tokens", "/app/installations/{installation_id}/access_tokens", "post"),
    ("POST", "/repos/o/r/check-runs", "/repos/{owner}/{repo}/check-runs", "post"),
    ("PATCH", "/repos/o/r/check-runs/5", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "patch"),
    ("POST", "/repos/o/r/deployments", "/repos/{owner}/{repo}/deployments", "post"),
    ("POST", "/repos/o/r/deployments/9/statuses", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "post"),
    ("POST", "/repos/o/r/issues/3/comments", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"),
    ("POST", "/repos/o/r/issues/comments/4/reactions",
     "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "post"),
]


def _json_schema(node: Any, spec: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: inline `$ref`s, `nullable` as a null type, drop OpenAPI-only keys."""
    if isinstance(node, list):
        return [_json_schema(item, spec) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _json_schema(spec["components"]["schemas"][name], spec)
    out = {k: _json_schema(v, spec) for k, v in node.items()
           if k not in ("discriminator", "example", "nullable", "readOnly", "writeOnly", "deprecated", "xml")}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _body_schema(template: str, method: str) -> dict[str, Any]:
    spec = github_spec()
    operation = spec["paths"][template][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return _json_schema(copy.deepcopy(schema), spec)


def _check(method: str, path: str, body: Any) -> Any:
    matched = match_path(path)
    assert matched is not None, path
    template, params = matched
    return validate_request(template, params, method, MultiDict(), CIMultiDictProxy(CIMultiDict()), json.dumps(body).encode(),
                            "application/json; charset=utf-8")


@pytest.mark.parametrize("method,path,template,verb", OPERATIONS, ids=[o[2] for o in OPERATIONS])
def test_every_body_the_spec_allows_is_accepted(method, path, template, verb):
    schema = _body_schema(template, verb)

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(from_schema(schema))
    def accepted(body):
        problem = _check(method, path, body)
        assert problem is None, (body, problem and problem.body)

    accepted()


@pytest.mark.parametrize("method,path,template,verb", OPERATIONS, ids=[o[2] for o in OPERATIONS])
def test_wrong_types_are_refused_with_422(method, path, template, verb):
    schema = _body_schema(template, verb)
    properties = schema.get("properties", {})
    typed = [(name, prop) for name, prop in properties.items() if prop.get("type") in ("string", "boolean", "array")]

    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(typed), st.integers(min_value=1000, max_value=10**6))
    def refused(item, number):
        name, _ = item
        body = {**{key: "x" for key in schema.get("required", [])}, name: {"not": number}}
        problem = _check(method, path, body)
        assert problem is not None and problem.status == 422, body
        assert problem.body["errors"] and problem.body["documentation_url"]

    if typed:
        refused()
