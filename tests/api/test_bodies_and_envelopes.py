"""Bad input always gets the error envelope with the right status: 400, 404, 405, 413, 415, 422."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.parametrize("database_backend", ["sqlite"], indirect=True)  # backend-neutral HTTP behaviour



async def test_malformed_json_is_400(api):
    token = await api.token("admin")
    resp, body = await api.call("POST", "/deploy/validate", token=token, data=b"{not json",
                                headers={"Content-Type": "application/json"})
    assert resp.status == 400 and body["error"]["code"] == "SYS_006"
    assert "Malformed JSON" in body["error"]["message"]
    assert body["error"]["details"]["correlationId"] == resp.headers["X-Correlation-ID"]


async def test_wrong_content_type_is_415(api):
    token = await api.token("admin")
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=b"environment=staging",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 415 and body["error"]["code"] == "SYS_006"


async def test_body_over_one_mebibyte_is_413(api):
    token = await api.token("admin")
    big = json.dumps({"environment": "staging", "config": {"appName": "x", "environmentVars": {"k": "v" * (1024 * 1024)}}})
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=big.encode(),
                                headers={"Content-Type": "application/json"})
    assert resp.status == 413 and body["error"]["code"] == "SYS_006"


async def test_validation_errors_are_422_naming_the_field(api):
    token = await api.token("admin")
    cases = [
        ("/deploy/validate", {"environment": "staging", "credentials": {"cloudflareApiToken": "t", "accountId": "NOT-HEX"}},
         "credentials.accountId"),
        ("/deploy/validate", {"credentials": {"cloudflareApiToken": "t", "accountId": "a" * 32}}, "environment"),
        ("/deploy", {"environment": "staging", "options": {"maxRetries": 99}}, "options.maxRetries"),
        ("/deploy", {"environment": "staging", "options": {"dryRun": "maybe"}}, "options.dryRun"),
        ("/deploy/prepare", {"environment": "staging", "config": {"appName": "ok", "durableObjects": "Counter"}},
         "config.durableObjects"),
        ("/deploy/prepare", {"environment": "staging", "typo": 1}, "typo"),
        ("/deploy/prepare", {"environment": "staging"}, "config"),
        ("/auth/github-app/token", {"installationId": "abc"}, "installationId"),
        ("/auth/github-app/token", {"installationId": "1", "permissions": {"contents": "everything"}}, "permissions.contents"),
        ("/auth/cloudflare/verify", {"requiredScopes": []}, "apiToken"),
        ("/deploy/validate", [1, 2], "body"),
    ]
    for path, payload, field in cases:
        resp, body = await api.call("POST", path, token=token, json=payload)
        assert resp.status == 422, (path, payload, body)
        err = body["error"]
        assert err["code"] == "SYS_006" and err["details"]["field"] == field, (path, err)
        assert err["details"]["reason"]


async def test_unknown_route_and_method_are_enveloped(api):
    resp, body = await api.call("GET", "/deploy/nope/nope")
    assert resp.status == 404 and body["error"]["code"] == "SYS_005"
    resp, body = await api.call("DELETE", "/deploy/validate")
    assert resp.status == 405 and body["error"]["code"] == "SYS_006"


async def test_query_parameters_are_validated(api):
    token = await api.token("read")
    resp, body = await api.call("GET", "/deployments?limit=0", token=token)
    assert resp.status == 422 and body["error"]["details"]["field"] == "limit"
    resp, body = await api.call("GET", "/metrics/errors?window=abc", token=token)
    assert resp.status == 422 and body["error"]["details"]["field"] == "window"


async def test_correlation_id_is_echoed(api):
    resp, body = await api.call("GET", "/health/deployment", headers={"X-Correlation-ID": "abc-123"})
    assert resp.headers["X-Correlation-ID"] == "abc-123" == body["metadata"]["correlationId"]


def nested(depth: int) -> bytes:
    """A JSON object whose `config` nests `depth` arrays (the body's own depth is depth + 1)."""
    return b'{"environment": "staging", "config": ' + b"[" * depth + b"]" * depth + b"}"


async def test_deeply_nested_json_is_400_on_every_body_route(api):
    token = await api.token("admin")
    bomb = b"[" * 100_000 + b"]" * 100_000  # 200 KB: Python's json decoder raises RecursionError
    routes = ["/deploy/validate", "/deploy/prepare", "/deploy", "/auth/cloudflare/verify", "/auth/tokens",
              "/auth/tokens/refresh", "/auth/permissions/validate", "/auth/github-app/token",
              "/deploy/dep_missing/retry", "/deploy/dep_missing/rollback"]
    for path in routes:
        for body_bytes in (bomb, nested(100_000)):
            resp, body = await api.call("POST", path, token=token, data=body_bytes,
                                        headers={"Content-Type": "application/json"})
            assert resp.status == 400, (path, resp.status, body)
            assert body["error"]["code"] == "SYS_006" and "deeper than 32" in body["error"]["message"], path
            assert body["error"]["details"]["field"] == "body"
    # Within the recursion limit but past the API's own bound: still 400, before validation runs.
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=nested(500),
                                headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "deeper than 32" in body["error"]["message"]
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=nested(32),
                                headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "deeper than 32" in body["error"]["message"]
    # At the bound it is an ordinary body, which validation then refuses naming the field.
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=nested(31),
                                headers={"Content-Type": "application/json"})
    assert resp.status == 422 and body["error"]["details"]["field"] == "config", body


async def test_charsets_other_than_utf8_are_415(api):
    token = await api.token("admin")
    payload = '{"environment": "staging", "config": {"appName": "caf\u00e9"}}'
    for content_type in ("application/json; charset=latin-1", "application/json; charset=ISO-8859-1",
                         "application/json; charset=utf-16", 'application/json; charset="windows-1252"'):
        resp, body = await api.call("POST", "/deploy/prepare", token=token, data=payload.encode("latin-1"),
                                    headers={"Content-Type": content_type})
        assert resp.status == 415, (content_type, body)
        assert body["error"]["code"] == "SYS_006" and "UTF-8" in body["error"]["message"]
        assert body["error"]["details"]["field"] == "Content-Type"
    # UTF-8 however it is spelled goes on to validation (the app name's pattern refuses the accent).
    for content_type in ("application/json; charset=utf-8", "application/json; charset=UTF-8",
                         'application/json; charset="utf8"', "application/json"):
        resp, body = await api.call("POST", "/deploy/prepare", token=token, data=payload.encode(),
                                    headers={"Content-Type": content_type})
        assert resp.status == 422 and body["error"]["details"]["field"] == "config.appName", (content_type, body)


async def test_bytes_that_are_not_utf8_are_400(api):
    token = await api.token("admin")
    for raw in ('{"environment": "staging", "x": "caf\u00e9"}'.encode("latin-1"),
                '{"environment": "staging"}'.encode("utf-16")):
        resp, body = await api.call("POST", "/deploy/prepare", token=token, data=raw,
                                    headers={"Content-Type": "application/json"})
        assert resp.status == 400 and body["error"]["code"] == "SYS_006", body
        assert "not valid UTF-8" in body["error"]["message"]
    # A UTF-8 byte order mark is allowed (RFC 8259 section 8.1 lets a parser ignore it).
    resp, body = await api.call("POST", "/deploy/prepare", token=token, data=b'\xef\xbb\xbf{"environment": "staging"}',
                                headers={"Content-Type": "application/json"})
    assert resp.status == 422 and body["error"]["details"]["field"] == "config", body
