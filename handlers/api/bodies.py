"""Reading a JSON request body into a pydantic model, with the API's limits and error codes.

415 for a body that is not JSON or declares a charset other than UTF-8, 413 above 1 MiB, 400 for
malformed JSON, bytes that are not UTF-8 or nesting deeper than `MAX_JSON_DEPTH`, 422 naming the
first invalid field (all of them in `details.errors`).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.errors import FlareshipError

MAX_API_BODY = 1024 * 1024
#: No request model nests deeper than a handful of levels; deeper bodies are refused before
#: anything recurses over them (Python's json decoder raises RecursionError near 1,000).
MAX_JSON_DEPTH = 32
#: RFC 8259 section 8.1: JSON exchanged between systems is UTF-8.
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
M = TypeVar("M", bound=BaseModel)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validation_error(exc: ValidationError) -> FlareshipError:
    """422 naming the first failing field and why; every failure listed (without input values)."""
    errors = [
        {"field": _field_path(tuple(e["loc"])), "reason": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = errors[0] if errors else {"field": "body", "reason": "invalid"}
    return FlareshipError(
        "SYS_006",
        f"Invalid request body: {first['field']}: {first['reason']}",
        variant="unprocessable",
        details={"field": first["field"], "reason": first["reason"], "errors": errors},
    )


async def read_limited(request: web.Request, limit: int = MAX_API_BODY) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise FlareshipError("SYS_006", f"Request body is larger than {limit} bytes", variant="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise FlareshipError("SYS_006", f"Request body is larger than {limit} bytes", variant="too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth(value: object) -> int:
    """How deeply `value` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_json_content_type(request: web.Request) -> None:
    """415 unless the body is declared JSON in UTF-8 (no charset means UTF-8, RFC 8259 section 8.1)."""
    content_type = request.content_type.lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise FlareshipError(
            "SYS_006", f"Content-Type must be application/json, not {content_type or 'missing'}", variant="unsupported_media_type"
        )
    charset = request.charset
    if charset is not None and charset.strip().lower() not in _UTF8_NAMES:
        raise FlareshipError(
            "SYS_006", f"JSON request bodies must be UTF-8, not charset={charset[:40]}", variant="unsupported_media_type",
            details={"field": "Content-Type", "reason": "charset must be utf-8"},
        )


def decode_json(raw: bytes) -> object:
    """The JSON value of a UTF-8 body (a leading BOM is ignored); 400 when it is not one."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FlareshipError("SYS_006", f"The request body is not valid UTF-8 (byte {exc.start})") from None
    too_deep = FlareshipError(
        "SYS_006", f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels",
        details={"field": "body", "reason": f"nested deeper than {MAX_JSON_DEPTH} levels"},
    )
    try:
        data = json.loads(text)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise FlareshipError("SYS_006", f"Malformed JSON: {exc}") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise too_deep
    return data


async def parse_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Validate the JSON body against `model`; with `optional`, an empty body means `{}`."""
    raw = await read_limited(request)
    if not raw.strip():
        if optional:
            return model()
        raise FlareshipError("SYS_006", "A JSON request body is required")
    check_json_content_type(request)
    data = decode_json(raw)
    if not isinstance(data, dict):
        raise FlareshipError(
            "SYS_006", "The request body must be a JSON object", variant="unprocessable",
            details={"field": "body", "reason": "must be an object"},
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def query_model(request: web.Request, model: type[M]) -> M:
    """Validate query parameters with a model (422 naming the parameter)."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None
