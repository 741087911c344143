"""What both front doors share over HTTP: correlation ids, the two envelopes, and error mapping.

Every error leaves the server as the REST API's error envelope (docs/rest-api.md), built in exactly one place
(`envelope_middleware`) from the catalogue in `bot.errors`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from bot.errors import FlareshipError, error_body, success_body
from bot.logs import correlation_id, new_correlation_id
from bot.server import client_event, describe_parser_error

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_HEADERS = (CORRELATION_HEADER, "X-Request-ID", "X-GitHub-Delivery")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

#: aiohttp's own HTTP errors (unknown route, wrong method, body too large, ...) -> catalogue code.
_HTTP_STATUS_CODES = {404: "SYS_005", 405: "SYS_006", 413: "SYS_006", 415: "SYS_006", 400: "SYS_006", 401: "AUTH_007", 403: "AUTH_006", 429: "SYS_003", 503: "SYS_002", 504: "SYS_004"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_correlation_id(request: web.Request) -> str:
    """Take the caller's X-Correlation-ID / X-Request-ID when it is a sane token, else mint one.

    A webhook's X-GitHub-Delivery counts as one: the acknowledgement's log lines then carry the
    same id as the dispatcher's, and as GitHub's delivery log."""
    for header in _CORRELATION_HEADERS:
        value = request.headers.get(header, "")
        if _SAFE_ID.match(value):
            return value
    return new_correlation_id()


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with orjson (several times faster than `json`, and UTF-8 as sent)."""
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status=status, headers=headers,
                        content_type="application/json")


def json_success(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Wrap `data` in the success envelope (JSON-able values only; pydantic models must be dumped)."""
    body = success_body(data, correlation_id=correlation_id.get(), timestamp=now_iso(), version=API_VERSION)
    return json_response(body, status=status, headers=headers)


def json_error(error: FlareshipError) -> web.Response:
    body = error_body(
        error.code,
        error.message,
        correlation_id=correlation_id.get(),
        timestamp=now_iso(),
        step=error.step,
        details=error.details,
    )
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(error.retry_after + 0.999)))
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_response(body, status=error.status, headers=headers)


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Correlate the request, and turn every failure into the error envelope: no traceback ever
    reaches a client. One middleware rather than two: each layer costs every request, webhook
    acknowledgements included."""
    cid = request_correlation_id(request)
    token = correlation_id.set(cid)
    try:
        response = await handler(request)
    except FlareshipError as exc:
        response = json_error(exc)
        if exc is request.content.exception():  # the body failed (too late, too large): no next request
            response.force_close()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _http_error(request, exc)
    except Exception as exc:
        if exc is not request.content.exception():
            log.exception("unhandled error on %s %s", request.method, request.path)
            response = json_error(FlareshipError("SYS_001"))
        else:
            response = _unreadable_body(request, exc)
    finally:
        correlation_id.reset(token)
    response.headers[CORRELATION_HEADER] = cid
    return response


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (unknown route, wrong method, body too large) in the error envelope."""
    code = _HTTP_STATUS_CODES.get(exc.status, "SYS_001" if exc.status >= 500 else "SYS_006")
    message = exc.reason if exc.status != 404 else f"No route for {request.method} {request.path}"
    if exc.status == 405:
        message = f"Method {request.method} is not allowed on {request.path}"
    if exc.status == 413:
        message = "Request body is too large"
    response = json_error(FlareshipError.aiohttp_refusal(code, message, exc.status))
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _unreadable_body(request: web.Request, exc: Exception) -> web.Response:
    """The request's own body failed while a handler read it: the client went away mid-body, or
    aiohttp could not decode it (a `Content-Encoding` the bytes do not match, malformed chunks,
    fewer bytes than Content-Length). The client's doing, so one INFO line and no traceback; the
    answer is a 400 (not sent when the client is gone) and the connection is closed after it."""
    if isinstance(exc, ConnectionError):
        client_event("clients gone before sending their whole body",
                     "client %s closed the connection before sending the whole body of %s %s",
                     request.remote, request.method, request.path)
        message = "The connection closed before the whole request body arrived"
    else:
        reason = describe_parser_error(exc)
        reason = re.sub(r"^\d{3}, message:\s*", "", reason) or "malformed body"
        client_event("request bodies that could not be read", "refused %s %s from %s: its body could not be read: %s",
                     request.method, request.path, request.remote, reason)
        message = f"The request body could not be read: {reason}"
    response = json_error(FlareshipError("SYS_006", message))
    response.force_close()
    return response
