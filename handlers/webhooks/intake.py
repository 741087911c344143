"""`POST /webhooks/github`: verify, store durably, acknowledge. The handlers run later, off the request.

Order matters: the body is read with a hard cap (413 before buffering more than 25 MiB), the
signature is checked with gidgethub's sansio layer and the secret always passed (401), the
content is decoded (415 / 400), and only then is the delivery written (group commit) and 202 sent.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

import orjson

from aiohttp import web
from gidgethub import ValidationFailure, sansio

from bot.dispatcher import DISPATCHER
from bot.errors import FlareshipError
from bot.logs import register_secret
from bot.services import SERVICES
from bot.store.base import utcnow
from bot.store.deliveries import DUPLICATE, REQUEUED, DeliveryWriter, NewDelivery
from handlers.http import json_success

log = logging.getLogger(__name__)

#: GitHub caps payloads at 25 MB; anything larger is not from GitHub.
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024
_DECODABLE = ("application/json", "application/x-www-form-urlencoded")

DELIVERY_WRITER = web.AppKey("delivery_writer", DeliveryWriter)
WEBHOOK_SECRET = web.AppKey("webhook_secret", str)


def _too_large() -> FlareshipError:
    return FlareshipError("SYS_006", f"Webhook body exceeds {MAX_WEBHOOK_BYTES} bytes", status=413)


async def read_capped(request: web.Request, limit: int = MAX_WEBHOOK_BYTES) -> bytes:
    """The raw body, refusing (413) as soon as it is known to exceed `limit`: by Content-Length
    first, then by counting while streaming, so at most `limit` bytes are ever held."""
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
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def parse_event(headers, body: bytes, secret: str, content_type: str) -> sansio.Event:
    """Verify and decode a webhook (pure): FlareshipError 401 / 415 / 400 for what GitHub never sends.

    The HMAC is gidgethub's (`sansio.validate_event`, constant time). Only SHA-256 is accepted:
    GitHub signs every delivery with it, and the legacy SHA-1 header is no proof of anything.
    JSON is decoded with orjson, which is about 3x faster than the standard library on GitHub's
    10 KB payloads; that decode is the largest cost of an acknowledgement.
    """
    signature = headers.get("X-Hub-Signature-256")
    try:
        if not signature:
            raise ValidationFailure("signature is missing")
        sansio.validate_event(body, signature=signature, secret=secret)
    except ValidationFailure:
        raise FlareshipError("AUTH_007", "Webhook signature (X-Hub-Signature-256) is missing or invalid", status=401) from None
    event_name = headers.get("X-GitHub-Event")
    delivery_id = headers.get("X-GitHub-Delivery")
    if not event_name:
        raise FlareshipError("SYS_006", "Webhook is missing the X-GitHub-Event header", status=400)
    if not delivery_id or len(delivery_id) > 100:
        raise FlareshipError("SYS_006", "X-GitHub-Delivery must be a non-empty id of at most 100 characters", status=400)
    data = _decode(body, content_type)
    if not isinstance(data, dict):
        raise FlareshipError("SYS_006", "Webhook body must be a JSON object", status=400)
    return sansio.Event(data, event=event_name, delivery_id=delivery_id)


def _decode(body: bytes, content_type: str):
    """The JSON document of a webhook body: sent as is, or in the `payload` field of a form."""
    if content_type not in _DECODABLE:
        raise FlareshipError(
            "SYS_006", "Webhook content type must be application/json or application/x-www-form-urlencoded", status=415
        )
    try:
        if content_type == "application/json":
            return orjson.loads(body)
        return orjson.loads(parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0])
    except (orjson.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError):
        raise FlareshipError("SYS_006", "Webhook body is not valid JSON", status=400) from None


def delivery_from_event(event: sansio.Event, body: bytes, content_type: str) -> NewDelivery:
    """What the store keeps of a verified webhook (pure)."""
    data = event.data
    installation = data.get("installation") if isinstance(data.get("installation"), dict) else {}
    repository = data.get("repository") if isinstance(data.get("repository"), dict) else {}
    action = data.get("action")
    installation_id = installation.get("id")
    # JSON bodies are stored as sent; form-encoded ones as the JSON inside their `payload` field.
    payload = body.decode("utf-8") if content_type == "application/json" else json.dumps(data)
    return NewDelivery(
        delivery_id=event.delivery_id,
        event=event.event,
        action=action if isinstance(action, str) else None,
        installation_id=installation_id if isinstance(installation_id, int) else None,
        repository=repository.get("full_name") if isinstance(repository.get("full_name"), str) else None,
        payload=payload,
        received_at=utcnow(),
    )


async def receive_webhook(request: web.Request) -> web.Response:
    metrics = request.app[SERVICES].metrics
    try:
        response, outcome = await _receive(request)
    except FlareshipError:
        if metrics is not None:
            metrics.webhook_delivery("unverified", "rejected")  # never label by what a forger sent
        raise
    if metrics is not None:
        metrics.webhook_delivery(request.headers.get("X-GitHub-Event", "unknown")[:50], outcome)
    return response


async def _receive(request: web.Request) -> tuple[web.Response, str]:
    """Verify, store and acknowledge; returns the response and its outcome for the metrics."""
    body = await read_capped(request)
    secret = request.app.get(WEBHOOK_SECRET)
    if not secret:
        raise FlareshipError("SYS_002", "GITHUB_WEBHOOK_SECRET is not configured; webhooks cannot be verified", status=503)
    content_type = request.content_type
    event = parse_event(request.headers, body, secret, content_type)
    if event.event == "ping":
        log.info("ping from GitHub (hook %s)", (event.data.get("hook") or {}).get("id", "?"))
        return json_success({"deliveryId": event.delivery_id, "event": "ping", "status": "pong"}), "ping"
    delivery = delivery_from_event(event, body, content_type)
    try:
        stored = await request.app[DELIVERY_WRITER].store(delivery)
    except Exception:
        raise FlareshipError("SYS_002", "The delivery could not be stored; it was not accepted", status=503) from None
    ack = {"deliveryId": event.delivery_id, "event": event.event}
    if stored == DUPLICATE:
        log.info("webhook %s %s is a repeat; acknowledged, not processed again", event.event, event.delivery_id)
        return json_success({**ack, "status": "duplicate"}), "duplicate"
    if stored == REQUEUED:
        log.info("webhook %s %s redelivered after its handlers failed; queued again", event.event, event.delivery_id)
        return json_success({**ack, "status": "requeued"}, status=202), "requeued"
    log.debug("webhook %s.%s %s stored", delivery.event, delivery.action, delivery.delivery_id)
    return json_success({**ack, "status": "queued"}, status=202), "accepted"


async def _delivery_writer(app: web.Application):
    """Start the group-commit writer on the database the store's start-up opened; flush it on exit."""
    writer = app[DELIVERY_WRITER]
    writer.database = app[SERVICES].database
    dispatcher = app.get(DISPATCHER)
    if dispatcher is not None:
        writer.on_stored = dispatcher.wake
        dispatcher.intake_busy = writer.busy
    writer.start()
    try:
        yield
    finally:
        await writer.stop()


def setup(app: web.Application) -> None:
    """Register the route; the writer starts after the database is opened (cleanup_ctx order)."""
    settings = app[SERVICES].settings
    secret = settings.github_webhook_secret.get_secret_value() if settings.github_webhook_secret else ""
    register_secret(secret, pinned=True)
    app[WEBHOOK_SECRET] = secret
    app[DELIVERY_WRITER] = DeliveryWriter(None)
    app.cleanup_ctx.append(_delivery_writer)
    app.router.add_post("/webhooks/github", receive_webhook)
