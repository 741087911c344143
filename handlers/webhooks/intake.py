"""`POST /webhooks/github`: verify, store durably, acknowledge. The handlers run later, off the request.

Order matters: the body is read with a hard cap (413 before buffering more than 25 MiB, counted
after decompression, so a gzip bomb is cut off too), the signature is checked with gidgethub's
sansio layer and the secret always passed (401), the headers and the content are checked (415 /
400: ids printable ASCII, every stored column within its column's size), and only then is the
delivery written (group commit) and 202 sent. A delivery of an event no handler takes (say a
`push`, or a `pull_request` `opened`) is acknowledged 202 `ignored` and not stored.
"""

from __future__ import annotations

import codecs
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
import simdjson
import sqlalchemy as sa
from aiohttp import web
from gidgethub import ValidationFailure, routing, sansio

from bot.errors import FlareshipError
from bot.server import drop_rest_of_body
from bot.services import SERVICES
from bot.store.base import utcnow
from bot.store.deliveries import DUPLICATE, REQUEUED, DeliveryRefused, NewDelivery, webhook_deliveries
from handlers.http import json_success

log = logging.getLogger(__name__)

#: GitHub caps payloads at 25 MB; anything larger is not from GitHub.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024

#: The stored columns' sizes, read from the table (PostgreSQL refuses longer values).
def _column_length(name: str) -> int:
    column_type = webhook_deliveries.c[name].type
    assert isinstance(column_type, sa.String) and column_type.length, name
    return column_type.length


MAX_ID_CHARS = _column_length("delivery_id")
MAX_EVENT_CHARS = _column_length("event")
MAX_ACTION_CHARS = _column_length("action")
MAX_REPOSITORY_CHARS = _column_length("repository")
#: installation_id is a BIGINT.
_BIGINT = range(-(2**63), 2**63)
#: Visible ASCII, no spaces: every id and event name GitHub sends.
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


class HandledEvents:
    """Which (event, action) pairs some handler of the router takes: `takes(event, action)`.

    Read from the composed gidgethub router (`handlers.webhooks.router`): an event with a handler
    for any action is taken whatever its action; one whose handlers are routed by `action` is
    taken for those actions only; routes on any other payload key take the whole event."""

    def __init__(self, router: routing.Router) -> None:
        self._any: set[str] = set(router._shallow_routes)
        self._actions: dict[str, set[object]] = {}
        for event, keys in router._deep_routes.items():
            if set(keys) - {"action"}:
                self._any.add(event)
            else:
                self._actions[event] = set(keys.get("action", ()))

    def takes(self, event: str, action: str | None) -> bool:
        return event in self._any or action in self._actions.get(event, ())

    @property
    def events(self) -> frozenset[str]:
        return frozenset(self._any | set(self._actions))


class IntakeRules:
    """What the intake checks a delivery against: the webhook secret ("" when not configured:
    every delivery is refused 503) and the events some handler of the router takes."""

    __slots__ = ("handled", "secret")

    def __init__(self, secret: str, router: routing.Router) -> None:
        self.secret = secret
        self.handled = HandledEvents(router)


INTAKE_RULES = web.AppKey("webhook_intake_rules", IntakeRules)


def _too_large() -> FlareshipError:
    return FlareshipError("SYS_006", f"Webhook body exceeds {MAX_WEBHOOK_BYTES} bytes", variant="too_large")


async def read_capped(request: web.Request, limit: int = MAX_WEBHOOK_BYTES) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed `limit`: by Content-Length
    first, then by counting while streaming (after decompression), so at most `limit` bytes are
    ever held. Past the limit the rest is dropped as it comes (`drop_rest_of_body`) instead of
    being read, and decompressed, for nothing."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            error = _too_large()
            drop_rest_of_body(request, error)
            raise error
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """A webhook whose signature checked out: its headers, its JSON text, and the few fields the
    store keeps as columns. The handlers decode the whole payload later, off the request."""

    event: str
    delivery_id: str
    payload: str
    action: str | None
    installation_id: int | None
    repository: str | None
    hook_id: int | None


def verify_webhook(headers: Mapping[str, str], body: bytes, secret: str, content_type: str) -> VerifiedWebhook:
    """Verify and read a webhook (pure): FlareshipError 401 / 415 / 400 for what GitHub never sends.

    The HMAC is gidgethub's (`sansio.validate_event`, constant time). Only SHA-256 is accepted:
    GitHub signs every delivery with it, and the legacy SHA-1 header is no proof of anything.
    """
    signature = headers.get("X-Hub-Signature-256")
    try:
        if not signature:
            raise ValidationFailure("signature is missing")
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        raise FlareshipError("AUTH_007", "Webhook signature (X-Hub-Signature-256) is missing or invalid") from None
    event_name = headers.get("X-GitHub-Event")
    delivery_id = headers.get("X-GitHub-Delivery")
    if not event_name:
        raise FlareshipError("SYS_006", "Webhook is missing the X-GitHub-Event header")
    _check_header("X-GitHub-Event", event_name, MAX_EVENT_CHARS)
    if not delivery_id:
        raise FlareshipError("SYS_006", "Webhook is missing the X-GitHub-Delivery header")
    _check_header("X-GitHub-Delivery", delivery_id, MAX_ID_CHARS)
    document = _json_document(body, content_type)
    action, installation_id, repository, hook_id = _read_columns(document)
    _check_text("action", action, MAX_ACTION_CHARS)
    _check_text("repository.full_name", repository, MAX_REPOSITORY_CHARS)
    if installation_id is not None and installation_id not in _BIGINT:
        raise FlareshipError("SYS_006", "installation.id is out of range (a 64-bit integer)")
    return VerifiedWebhook(event_name, delivery_id, document.decode("utf-8"), action, installation_id, repository, hook_id)


def _check_header(name: str, value: str, limit: int) -> None:
    """An id or event name: visible ASCII (a byte that is not arrives as a surrogate or a
    non-ASCII character), at most `limit` characters (the stored column's size)."""
    if len(value) > limit or not _VISIBLE_ASCII.fullmatch(value):
        raise FlareshipError(
            "SYS_006", f"{name} must be 1 to {limit} visible ASCII characters (letters, digits, punctuation)"
        )


def _check_text(field: str, value: str | None, limit: int) -> None:
    """A stored column read from the payload: at most `limit` characters, and no NUL (which
    PostgreSQL cannot store in text)."""
    if value is not None and (len(value) > limit or "\x00" in value):
        raise FlareshipError("SYS_006", f"{field} must be at most {limit} characters, without NUL")


def _json_document(body: bytes, content_type: str) -> bytes:
    """The JSON text of a webhook body: sent as is, or in the `payload` field of a form."""
    if content_type == "application/json":
        return body
    if content_type == "application/x-www-form-urlencoded":
        try:
            return parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0].encode("utf-8")
        except (UnicodeDecodeError, ValueError, KeyError):
            raise _not_json() from None
    raise FlareshipError(
        "SYS_006", "Webhook content type must be application/json or application/x-www-form-urlencoded", variant="unsupported_media_type"
    )


_parsers = threading.local()
_OBJECTS = (dict, simdjson.Object)


def _read_columns(document: bytes) -> tuple[str | None, int | None, str | None, int | None]:
    """Validate a JSON document and read its action, installation id, repository and hook id.

    simdjson validates the whole document, UTF-8 included, and builds Python objects only for
    what is read: a full decode (orjson) cost about 4x more of every acknowledgement, for
    objects thrown away at once (the dispatcher decodes the stored payload when it handles it).
    A document simdjson cannot represent (an integer beyond 64 bits) is decoded with orjson.
    """
    if document.startswith(codecs.BOM_UTF8):  # RFC 8259 8.1: no byte order mark; GitHub sends none
        raise _not_json()
    parser = getattr(_parsers, "parser", None)
    if parser is None:  # one per thread: a parser holds the last document it parsed
        parser = _parsers.parser = simdjson.Parser()
    try:
        root = parser.parse(document)
    except ValueError:  # malformed JSON or UTF-8 (UnicodeDecodeError is a ValueError)
        raise _not_json() from None
    except RuntimeError:
        try:
            root = orjson.loads(document)
        except orjson.JSONDecodeError:
            raise _not_json() from None
    if not isinstance(root, _OBJECTS):
        raise FlareshipError("SYS_006", "Webhook body must be a JSON object")
    action = root.get("action")
    return (
        action if isinstance(action, str) else None,
        _member(root, "installation", "id", int),
        _member(root, "repository", "full_name", str),
        _member(root, "hook", "id", int),
    )


def _member(root: Any, key: str, field: str, kind: type) -> Any:
    """`root[key][field]` when it is there and of `kind` (booleans are not ids), else None."""
    parent = root.get(key)
    value = parent.get(field) if isinstance(parent, _OBJECTS) else None
    return value if type(value) is kind else None


def _not_json() -> FlareshipError:
    return FlareshipError("SYS_006", "Webhook body is not valid JSON")


def delivery_from_webhook(webhook: VerifiedWebhook) -> NewDelivery:
    """What the store keeps of a verified webhook (pure); form-encoded bodies are kept as the
    JSON inside their `payload` field."""
    return NewDelivery(
        delivery_id=webhook.delivery_id,
        event=webhook.event,
        action=webhook.action,
        installation_id=webhook.installation_id,
        repository=webhook.repository,
        payload=webhook.payload,
        received_at=utcnow(),
    )


async def receive_webhook(request: web.Request) -> web.Response:
    metrics = request.app[SERVICES].metrics
    try:
        response, outcome = await _receive(request)
    except FlareshipError:
        metrics.webhook_delivery("unverified", "rejected")  # never label by what a forger sent
        raise
    metrics.webhook_delivery(request.headers.get("X-GitHub-Event", "unknown")[:50], outcome)
    return response


async def _receive(request: web.Request) -> tuple[web.Response, str]:
    """Verify, store and acknowledge; returns the response and its outcome for the metrics."""
    body = await read_capped(request)
    rules = request.app[INTAKE_RULES]
    secret = rules.secret
    if not secret:
        raise FlareshipError("SYS_002", "GITHUB_WEBHOOK_SECRET is not configured; webhooks cannot be verified")
    content_type = request.content_type
    event = verify_webhook(request.headers, body, secret, content_type)
    if event.event == "ping":
        log.info("ping from GitHub (hook %s)", event.hook_id if event.hook_id is not None else "?")
        return json_success({"deliveryId": event.delivery_id, "event": "ping", "status": "pong"}), "ping"
    ack = {"deliveryId": event.delivery_id, "event": event.event}
    if not rules.handled.takes(event.event, event.action):
        log.debug("webhook %s.%s %s: no handler takes it; acknowledged, not stored", event.event, event.action,
                  event.delivery_id)
        request.app[SERVICES].metrics.webhook_ignored(event.event)
        return json_success({**ack, "status": "ignored"}, status=202), "ignored"
    delivery = delivery_from_webhook(event)
    try:
        stored = await request.app[SERVICES].deliveries.store(delivery)
    except DeliveryRefused as exc:  # this row alone failed, for what it holds: GitHub's repeat would too
        raise FlareshipError("SYS_006", f"The delivery was refused by the store: {exc.reason}") from None
    except Exception:
        raise FlareshipError("SYS_002", "The delivery could not be stored; it was not accepted") from None
    if stored == DUPLICATE:
        log.info("webhook %s %s is a repeat; acknowledged, not processed again", event.event, event.delivery_id)
        return json_success({**ack, "status": "duplicate"}), "duplicate"
    if stored == REQUEUED:
        log.info("webhook %s %s redelivered after its handlers failed; queued again", event.event, event.delivery_id)
        return json_success({**ack, "status": "requeued"}, status=202), "requeued"
    log.debug("webhook %s.%s %s stored", delivery.event, delivery.action, delivery.delivery_id)
    return json_success({**ack, "status": "queued"}, status=202), "accepted"


def setup(app: web.Application) -> None:
    """Register the route (its rules and the delivery writer come from the composition root)."""
    app.router.add_post("/webhooks/github", receive_webhook)
