"""The intake checks what it stores before storing it, and stores only what some handler takes.

- `X-GitHub-Delivery` / `X-GitHub-Event`: visible ASCII, at most the stored column's size (400).
- The stored columns read from the payload (action, repository.full_name, installation.id) fit
  their columns (400): on PostgreSQL a longer value failed the whole group commit, and every
  delivery committed with it got 503 (GitHub does not redeliver by itself).
- A verified delivery of an event no handler takes is acknowledged (202 `ignored`), counted in
  the metrics, and not stored; `ping` is still answered 200 `pong`.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from gidgethub import routing

from bot.store.deliveries import DeliveryStore
from tests.plugins.webhooks import fixture_body, post_webhook, sign

PR_COMMENT = "issue_comment.created.pull_request"


async def _raw_post(client, head_lines: list[bytes], body: bytes) -> tuple[int, dict]:
    """POST with header values sent as raw bytes (aiohttp's client only sends text)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        head = b"POST /webhooks/github HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + b"".join(
            line + b"\r\n" for line in head_lines) + b"Content-Length: %d\r\n\r\n" % len(body)
        writer.write(head + body)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


def _signed_head(event: bytes, delivery_id: bytes, body: bytes) -> list[bytes]:
    return [b"Content-Type: application/json", b"X-GitHub-Event: " + event, b"X-GitHub-Delivery: " + delivery_id,
            b"X-Hub-Signature-256: " + sign(body).encode()]


@pytest.mark.parametrize("event, delivery_id", [
    (b"issue_comment", b"d-\xff\xfe"),          # not UTF-8
    (b"issue_\xe9comment", b"d-latin1-event"),  # not UTF-8
    (b"issue_comment", "d-caf\u00e9".encode()),  # UTF-8, not ASCII
    (b"issue_comment", b"d-" + b"x" * 99),      # 101 characters: longer than the column
    (b"e" * 101, b"d-long-event"),
    (b"issue_comment", b"d with spaces"),
    (b"issue_comment", b"d-\t-tab"),  # a control character aiohttp lets through
])
async def test_ids_and_event_names_must_be_short_visible_ascii(flareship_client, database, event, delivery_id):
    body = fixture_body(PR_COMMENT)
    status, answer = await _raw_post(flareship_client, _signed_head(event, delivery_id, body), body)
    assert status == 400 and answer["error"]["code"] == "SYS_006", answer
    assert "visible ASCII" in answer["error"]["message"]
    assert sum((await DeliveryStore(database).count_by_status()).values()) == 0


async def test_an_id_of_exactly_100_characters_is_stored(flareship_client, database):
    delivery_id = "d" * 100
    assert (await post_webhook(flareship_client, "issue_comment", PR_COMMENT, delivery_id=delivery_id)).status == 202
    assert await DeliveryStore(database).get(delivery_id) is not None


def _comment(**changes) -> dict:
    payload = json.loads(fixture_body(PR_COMMENT))
    for path, value in changes.items():
        target = payload
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return payload


@pytest.mark.parametrize("changes, field", [
    ({"action": "created" + "x" * 94}, "action"),
    ({"action": "crea\u0000ted"}, "action"),
    ({"repository__full_name": "acme/" + "r" * 251}, "repository.full_name"),
    ({"repository__full_name": "acme/\u0000"}, "repository.full_name"),
    ({"installation__id": 2**63}, "installation.id"),  # beyond BIGINT, within what simdjson reads as an int
])
async def test_stored_columns_that_do_not_fit_are_refused_before_storing(flareship_client, database, changes, field):
    response = await post_webhook(flareship_client, "issue_comment", _comment(**changes), delivery_id="d-too-big")
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "SYS_006" and field in error["message"]
    assert await DeliveryStore(database).get("d-too-big") is None


async def test_columns_at_their_limits_are_stored(flareship_client, database):
    payload = _comment(action="created", repository__full_name="a/" + "r" * 253, installation__id=2**63 - 1)
    response = await post_webhook(flareship_client, "issue_comment", payload, delivery_id="d-at-limits")
    assert response.status == 202, await response.text()
    stored = await DeliveryStore(database).get("d-at-limits")
    assert (len(stored.repository), stored.installation_id) == (255, 2**63 - 1)


async def test_one_bad_delivery_among_sixty_fails_only_itself(flareship_client, database, caplog):
    """The issue's case: 60 valid deliveries and one whose action is 101 characters, sent at once
    (so that they share group commits): 60 acknowledged and stored, one 400, no log line holding
    the payload."""
    from bot.dispatcher import DISPATCHER

    await flareship_client.app[DISPATCHER].stop()  # keep the rows pending, and GitHub out of it
    marker = "marker-a8e1f0"
    good = [_comment(comment__body=f"{marker} {n}") for n in range(60)]
    bad = _comment(action="c" * 101, comment__body=marker)
    responses = await asyncio.gather(
        *(post_webhook(flareship_client, "issue_comment", p, delivery_id=f"d-ok-{n}") for n, p in enumerate(good[:30])),
        post_webhook(flareship_client, "issue_comment", bad, delivery_id="d-bad"),
        *(post_webhook(flareship_client, "issue_comment", p, delivery_id=f"d-ok-{n}") for n, p in enumerate(good[30:], 30)),
    )
    statuses = [r.status for r in responses]
    assert statuses[30] == 400
    assert statuses[:30] + statuses[31:] == [202] * 60
    assert (await DeliveryStore(database).count_by_status())["pending"] == 60
    assert all(marker not in r.getMessage() and "c" * 101 not in r.getMessage() for r in caplog.records)


# -- events no handler takes -------------------------------------------------------------------------


def _ignored_count(client, event: str) -> float:
    from bot.services import SERVICES

    value = client.app[SERVICES].metrics.registry.get_sample_value("flareship_webhook_ignored_total", {"event": event})
    return value or 0.0


@pytest.mark.parametrize("event, fixture", [
    ("push", "push"),
    ("check_suite", "check_suite.requested"),
    ("deployment_status", "deployment_status.created"),
    # pull_request is handled, but not its `edited` action
    ("pull_request", {"action": "edited", "number": 7, "pull_request": {"number": 7}}),
    ("security_advisory", {"action": "published", "security_advisory": {"ghsa_id": "GHSA-x"}}),
])
async def test_events_no_handler_takes_are_acknowledged_counted_and_not_stored(flareship_client, database, event,
                                                                                fixture):
    response = await post_webhook(flareship_client, event, fixture, delivery_id=f"d-ignored-{event}")
    assert response.status == 202
    assert (await response.json())["data"] == {"deliveryId": f"d-ignored-{event}", "event": event, "status": "ignored"}
    assert await DeliveryStore(database).get(f"d-ignored-{event}") is None
    assert _ignored_count(flareship_client, event) == 1


@pytest.mark.parametrize("event, fixture", [
    ("issue_comment", PR_COMMENT),
    ("pull_request", "pull_request.closed.merged"),
    ("pull_request", "pull_request.labeled"),
    ("pull_request", "pull_request.synchronize"),
    ("pull_request", "pull_request.opened"),  # previews
    ("check_run", "check_run.requested_action"),
    ("installation", "installation.created"),
    ("installation_repositories", "installation_repositories.added"),
])
async def test_events_a_handler_takes_are_stored(flareship_client, database, event, fixture):
    from bot.dispatcher import DISPATCHER

    await flareship_client.app[DISPATCHER].stop()
    response = await post_webhook(flareship_client, event, fixture, delivery_id=f"d-taken-{event}")
    assert response.status == 202 and (await response.json())["data"]["status"] == "queued"
    assert await DeliveryStore(database).get(f"d-taken-{event}") is not None


async def test_an_ignored_delivery_is_still_verified_first(flareship_client):
    response = await post_webhook(flareship_client, "push", "push", secret="not-the-secret")
    assert response.status == 401


async def test_ping_is_still_answered_pong(flareship_client, database):
    response = await post_webhook(flareship_client, "ping", "ping", delivery_id="d-ping-2")
    assert response.status == 200 and (await response.json())["data"]["status"] == "pong"
    assert _ignored_count(flareship_client, "ping") == 0


def test_handled_events_are_read_from_the_router():
    from handlers.webhooks import router
    from handlers.webhooks.intake import HandledEvents

    handled = HandledEvents(router)
    assert handled.takes("issue_comment", "created") and not handled.takes("issue_comment", "edited")
    assert handled.takes("installation_repositories", "removed")  # routed whatever its action
    assert not handled.takes("push", None) and not handled.takes("ping", None)

    custom = routing.Router()

    async def on_anything(event, *args, **kwargs):
        pass

    custom.add(on_anything, "push")
    custom.add(on_anything, "pull_request", action="opened")
    custom.add(on_anything, "issues", label="bug")  # routed on another key: the whole event counts
    handled = HandledEvents(custom)
    assert handled.takes("push", None) and handled.takes("pull_request", "opened")
    assert not handled.takes("pull_request", "closed") and handled.takes("issues", "opened")
    assert handled.events == {"push", "pull_request", "issues"}


async def test_ignoring_is_logged_at_debug_only(flareship_client, caplog):
    caplog.set_level(logging.DEBUG, logger="handlers.webhooks.intake")
    await post_webhook(flareship_client, "push", "push", delivery_id="d-quiet")
    lines = [r for r in caplog.records if "d-quiet" in r.getMessage()]
    assert lines and all(r.levelno == logging.DEBUG for r in lines)
