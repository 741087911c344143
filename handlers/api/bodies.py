"""Reading a JSON request body into a pydantic model, with the API's limits and error codes.

415 for a body that is not JSON, 413 above 1 MiB, 400 for malformed JSON, 422 naming the first
invalid field (all of them in `details.errors`).
"""

from __future__ import annotations

import json
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.errors import FlareshipError

MAX_API_BODY = 1024 * 1024
M = TypeVar("M", bound=BaseModel)


def _field_path(loc: tuple) -> str:
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
        status=422,
        details={"field": first["field"], "reason": first["reason"], "errors": errors},
    )


async def read_limited(request: web.Request, limit: int = MAX_API_BODY) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise FlareshipError("SYS_006", f"Request body is larger than {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise FlareshipError("SYS_006", f"Request body is larger than {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: web.Request, model: type[M], *, optional: bool = False) -> M:
    """Validate the JSON body against `model`; with `optional`, an empty body means `{}`."""
    raw = await read_limited(request)
    if not raw.strip():
        if optional:
            return model()
        raise FlareshipError("SYS_006", "A JSON request body is required", status=400)
    content_type = request.content_type.lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise FlareshipError(
            "SYS_006", f"Content-Type must be application/json, not {content_type or 'missing'}", status=415
        )
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FlareshipError("SYS_006", f"Malformed JSON: {exc}", status=400) from None
    if not isinstance(data, dict):
        raise FlareshipError(
            "SYS_006", "The request body must be a JSON object", status=422,
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
