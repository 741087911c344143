"""POST /webhooks/github: verify, store durably before the 202, deduplicate, refuse bad input clearly."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.store import deliveries
from bot.store.db import Database
from bot.store.deliveries import DeliveryStore
from tests.plugins.webhooks import TEST_WEBHOOK_SECRET, fixture_body, post_webhook, sign, webhook_headers

PR_COMMENT = "issue_comment.created.pull_request"


async def _error(response, status: int, code: str) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["error"]["code"] == code
    assert body["error"]["details"]["correlationId"]
    return body["error"]


async def test_event_is_stored_before_the_202(flareship_client, database_url):
    response = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-stored-1")
    assert response.status == 202
    body = await response.json()
    assert body["success"] is True and body["data"] == {"deliveryId": "d-stored-1", "event": "issue_comment", "status": "queued"}
    # Close the app right after the ack: whatever the dispatcher did or not, the row must exist.
    await flareship_client.close()
    observer = Database(database_url)
    try:
        stored = await DeliveryStore(observer).get("d-stored-1")
    finally:
        await observer.close()
    payload = json.loads(fixture_body(PR_COMMENT))
    assert stored is not None
    assert stored.event == "issue_comment" and stored.action == "created"
    assert stored.installation_id == payload["installation"]["id"]
    assert stored.repository == payload["repository"]["full_name"]
    assert json.loads(stored.payload) == payload
    assert stored.received_at.tzinfo is not None
    assert stored.status in deliveries.STATUSES


async def _hold_the_dispatcher(client) -> None:
    """Leave stored deliveries pending: a handler failing meanwhile (no GitHub here) would turn a
    repeat into a redelivery of a failed delivery, which is queued again by design."""
    from bot.dispatcher import DISPATCHER

    await client.app[DISPATCHER].stop()


async def test_repeated_delivery_is_acknowledged_once(flareship_client, database):
    await _hold_the_dispatcher(flareship_client)
    first = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-dup")
    again = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-dup")
    assert first.status == 202
    assert again.status == 200
    assert (await again.json())["data"]["status"] == "duplicate"
    counts = await DeliveryStore(database).count_by_status()
    assert sum(counts.values()) == 1


async def test_githubs_redelivery_of_a_failed_delivery_runs_it_again(flareship_client, database):
    """GitHub's "Redeliver" resends the same X-GitHub-Delivery: a delivery whose handlers failed is
    queued again (202); one that was handled is still only acknowledged."""
    await _hold_the_dispatcher(flareship_client)  # these rows' outcomes are set by hand below
    for delivery_id in ("d-failed", "d-done"):
        assert (await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id=delivery_id)).status == 202
    failed, done = await DeliveryStore(database).get("d-failed"), await DeliveryStore(database).get("d-done")
    await DeliveryStore(database).record_outcomes([done.id], [(failed.id, "ConnectionError: GitHub was down")])

    again = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-failed")
    assert again.status == 202 and (await again.json())["data"]["status"] == "requeued"
    requeued = await DeliveryStore(database).get("d-failed")
    assert (requeued.id, requeued.status, requeued.processed_at) == (failed.id, "pending", None)

    repeat = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-done")
    assert repeat.status == 200 and (await repeat.json())["data"]["status"] == "duplicate"
    assert (await DeliveryStore(database).get("d-done")).status == "done"


async def test_concurrent_repeats_store_one_row(flareship_client, database):
    await _hold_the_dispatcher(flareship_client)
    responses = await asyncio.gather(
        *(post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-race") for _ in range(10))
    )
    assert sorted(r.status for r in responses) == [200] * 9 + [202]
    assert sum((await DeliveryStore(database).count_by_status()).values()) == 1


async def test_ping_answers_200_and_is_not_stored(flareship_client, database):
    response = await post_webhook(flareship_client, "ping", "ping", delivery_id="d-ping")
    assert response.status == 200
    assert (await response.json())["data"]["status"] == "pong"
    assert await DeliveryStore(database).get("d-ping") is None


@pytest.mark.parametrize("secret", [None, "the-wrong-secret"])
async def test_missing_or_bad_signature_is_401(flareship_client, database, secret):
    response = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-forged", secret=secret)
    error = await _error(response, 401, "AUTH_007")
    assert "signature" in error["message"].lower()
    assert await DeliveryStore(database).get("d-forged") is None


async def test_legacy_sha1_signature_alone_is_401(flareship_client, database):
    """GitHub signs every delivery with SHA-256; a request carrying only the SHA-1 header is not trusted."""
    import hashlib
    import hmac

    body = fixture_body(PR_COMMENT)
    headers = webhook_headers("issue_comment", "d-sha1", body)
    del headers["X-Hub-Signature-256"]
    headers["X-Hub-Signature"] = "sha1=" + hmac.new(TEST_WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 401, "AUTH_007")
    assert await DeliveryStore(database).get("d-sha1") is None


async def test_the_ack_carries_the_delivery_id_as_correlation_id(flareship_client):
    response = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert response.status == 202
    assert response.headers["X-Correlation-ID"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert (await response.json())["metadata"]["correlationId"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"


async def test_signature_over_other_bytes_is_401(flareship_client):
    body = fixture_body(PR_COMMENT)
    headers = webhook_headers("issue_comment", "d-tampered", body)
    response = await flareship_client.post("/webhooks/github", data=body.replace(b"created", b"deleted", 1), headers=headers)
    await _error(response, 401, "AUTH_007")


async def test_wrong_content_type_is_415(flareship_client):
    body = b"hello"
    headers = webhook_headers("issue_comment", "d-text", body, content_type="text/plain")
    await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 415, "SYS_006")


async def test_malformed_json_is_400(flareship_client, database):
    body = b'{"action": "created", '
    headers = webhook_headers("issue_comment", "d-broken", body)
    error = await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 400, "SYS_006")
    assert "json" in error["message"].lower()
    assert await DeliveryStore(database).get("d-broken") is None


@pytest.mark.parametrize("body", [b'{"action": "caf\xe9"}', b"", b"\xef\xbb\xbf{}"])
async def test_body_that_is_not_utf8_json_is_400(flareship_client, body):
    headers = webhook_headers("issue_comment", "d-latin1", body)
    await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 400, "SYS_006")


async def test_json_that_is_not_an_object_is_400(flareship_client):
    body = b"[1, 2]"
    response = await flareship_client.post("/webhooks/github", data=body, headers=webhook_headers("push", "d-list", body))
    await _error(response, 400, "SYS_006")


async def test_missing_event_header_is_400(flareship_client):
    body = fixture_body("push")
    headers = webhook_headers("push", "d-noevent", body)
    del headers["X-GitHub-Event"]
    error = await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 400, "SYS_006")
    assert "x-github-event" in error["message"].lower()


async def test_form_encoded_webhooks_are_accepted(flareship_client, database):
    from urllib.parse import urlencode

    body = urlencode({"payload": fixture_body(PR_COMMENT).decode()}).encode()
    headers = webhook_headers("issue_comment", "d-form", body, content_type="application/x-www-form-urlencoded")
    response = await flareship_client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 202
    stored = await DeliveryStore(database).get("d-form")
    assert json.loads(stored.payload) == json.loads(fixture_body(PR_COMMENT))


async def _raw_exchange(client, head: bytes, chunks, *, read_timeout: float = 5.0) -> bytes:
    """Send a request by hand (headers, then as much body as `chunks` yields) and read the answer
    without ever finishing the body: proof the server answered before reading it all."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_timeout) + await asyncio.wait_for(
            reader.read(2000), read_timeout
        )
    finally:
        writer.close()


def _head(extra: str) -> bytes:
    return (
        "POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "X-GitHub-Event: push\r\nX-GitHub-Delivery: d-big\r\nX-Hub-Signature-256: sha256=00\r\n" + extra + "\r\n"
    ).encode()


async def test_declared_oversize_body_is_413_before_reading(flareship_client):
    answer = await _raw_exchange(flareship_client, _head(f"Content-Length: {100 * 1024 * 1024}\r\n"), [b"{" * 1024])
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"SYS_006"' in answer


async def test_streamed_oversize_body_is_413_without_reading_to_the_end(flareship_client):
    piece = b"x" * (1024 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # 26 MiB of chunks and no terminating chunk: the server must stop counting at 25 MiB and answer.
    answer = await _raw_exchange(flareship_client, _head("Transfer-Encoding: chunked\r\n"), [chunk] * 26, read_timeout=10)
    assert answer.startswith(b"HTTP/1.1 413")


async def test_body_at_the_limit_is_read(flareship_client):
    """A signed body just under the cap is verified normally (here: valid signature, bad JSON)."""
    body = b"{" + b" " * (1024 * 1024) + b"x"
    headers = webhook_headers("push", "d-large-ok", body)
    await _error(await flareship_client.post("/webhooks/github", data=body, headers=headers), 400, "SYS_006")


async def test_store_failure_is_503_and_not_acknowledged(flareship_client):
    from bot.services import SERVICES

    writer = flareship_client.app[SERVICES].deliveries.writer
    real = writer.database

    class Broken:
        dialect = "postgresql"

        async def run_write(self, fn, *args):
            raise ConnectionError("database is down")

    writer.database = Broken()
    try:
        response = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-down")
        await _error(response, 503, "SYS_002")
    finally:
        writer.database = real
    response = await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id="d-down")
    assert response.status == 202  # GitHub's redelivery is then accepted


def test_sign_matches_githubs_documented_example():
    # docs.github.com "Validating webhook deliveries": secret "It's a Secret to Everybody", payload "Hello, World!"
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert TEST_WEBHOOK_SECRET


# -- reading a verified body (pure) ---------------------------------------------------------------


def _verified(body: bytes, *, event: str = "issue_comment", content_type: str = "application/json"):
    from handlers.webhooks.intake import verify_webhook

    return verify_webhook(webhook_headers(event, "d-pure", body, content_type=content_type), body, TEST_WEBHOOK_SECRET,
                          content_type)


def test_the_stored_columns_are_read_without_decoding_the_rest():
    body = fixture_body(PR_COMMENT)
    payload = json.loads(body)
    webhook = _verified(body)
    assert (webhook.action, webhook.installation_id, webhook.repository) == (
        "created", payload["installation"]["id"], payload["repository"]["full_name"])
    assert webhook.payload == body.decode("utf-8")  # kept exactly as GitHub sent it


@pytest.mark.parametrize("body", [
    b'{"action": 7, "installation": {"id": "9"}, "repository": {"full_name": 3}}',
    b'{"installation": [1], "repository": null}',
    b'{"installation": {"id": true}, "repository": {}}',
])
def test_columns_of_the_wrong_type_are_left_empty(body):
    webhook = _verified(body)
    assert (webhook.action, webhook.installation_id, webhook.repository) == (None, None, None)


def test_a_document_with_an_integer_beyond_64_bits_is_still_read():
    body = b'{"action": "created", "installation": {"id": 5}, "big": 123456789012345678901234567890}'
    webhook = _verified(body)
    assert (webhook.action, webhook.installation_id) == ("created", 5)


def test_the_ping_hook_id_is_read():
    assert _verified(fixture_body("ping"), event="ping").hook_id == json.loads(fixture_body("ping"))["hook"]["id"]


def test_reading_many_documents_in_turn_gives_each_its_own_fields():
    """One simdjson parser serves every request on a thread; no answer may leak into the next."""
    for n in range(50):
        body = json.dumps({"action": f"a{n}", "installation": {"id": n}, "repository": {"full_name": f"o/r{n}"}}).encode()
        webhook = _verified(body)
        assert (webhook.action, webhook.installation_id, webhook.repository) == (f"a{n}", n, f"o/r{n}")


@pytest.mark.parametrize("body", [b'{"a": 1,}', b'{"a": NaN}', b'{"a": 1} x', b'{"a": "\\ud800"}', b"\xef\xbb\xbf{}",
                                  b'{"a": "\xc3"}', b"nul"])
def test_documents_that_are_not_json_are_refused(body):
    from bot.errors import FlareshipError

    with pytest.raises(FlareshipError) as raised:
        _verified(body)
    assert raised.value.status == 400 and "not valid JSON" in raised.value.message


async def test_big_integers_do_not_stop_a_delivery(flareship_client, database):
    body = b'{"action": "created", "number": 123456789012345678901234567890}'
    response = await flareship_client.post("/webhooks/github", data=body,
                                           headers=webhook_headers("issue_comment", "d-bigint", body))
    assert response.status == 202
    assert (await DeliveryStore(database).get("d-bigint")).payload == body.decode()
