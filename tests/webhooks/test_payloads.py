"""Signed deliveries whose payload does not have the shape a handler needs: one WARNING, no failure.

Each payload is signed and posted into the real app; the dispatcher hands it to the real
router. Before the typed events (`handlers/webhooks/events.py`) each of these raised a KeyError
or ValueError in its handler: a failed delivery and an ERROR traceback.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.plugins.webhooks import load_fixture, post_webhook, wait_processed

Payload = dict[str, Any]


def _comment(change: Callable[[Payload], None]) -> tuple[str, Payload]:
    payload = copy.deepcopy(load_fixture("issue_comment.created.pull_request"))
    payload["comment"]["body"] = "/deploy staging"
    payload["comment"]["user"] = payload["sender"] = {"login": "dev", "id": 1, "type": "User"}
    change(payload)
    return "issue_comment", payload


def _pull(fixture: str, change: Callable[[Payload], None]) -> tuple[str, Payload]:
    payload = copy.deepcopy(load_fixture(fixture))
    payload["sender"] = {"login": "lead", "id": 2, "type": "User"}
    change(payload)
    return "pull_request", payload


def _drop(*path: str) -> Callable[[Payload], None]:
    def change(payload: Payload) -> None:
        *parents, last = path
        node = payload
        for key in parents:
            node = node[key]
        node.pop(last, None)
    return change


def _set(value: object, *path: str) -> Callable[[Payload], None]:
    def change(payload: Payload) -> None:
        *parents, last = path
        node = payload
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return change


CASES = {
    "comment without repository": (_comment(_drop("repository")), "repository is missing"),
    "installation id as a string": (_comment(_set("4242", "installation", "id")), "installation.id is invalid"),
    "comment without id": (_comment(_drop("comment", "id")), "comment.id is missing"),
    "issue number as a string": (_comment(_set("7", "issue", "number")), "issue.number is invalid"),
    "comment body as a number": (_comment(_set(5, "comment", "body")), "comment.body is invalid"),
    "label without a name": (_pull("pull_request.labeled", _drop("label", "name")), "label.name is missing"),
    "labeled number as a string": (_pull("pull_request.labeled", _set("7", "pull_request", "number")),
                                   "pull_request.number is invalid"),
    "merge with merged as a string": (_pull("pull_request.closed.merged", _set("yes", "pull_request", "merged")),
                                      "pull_request.merged is invalid"),
    "synchronize without repository": (_pull("pull_request.synchronize", _drop("repository")),
                                       "repository is missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_malformed_payload_is_ignored_with_one_warning(case: str, flareship_client: Any, database: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (event, payload), problem = CASES[case]
    delivery_id = f"bad-{uuid.uuid4()}"
    caplog.set_level(logging.INFO)
    response = await post_webhook(flareship_client, event, payload, delivery_id=delivery_id)
    assert response.status == 202, await response.text()

    stored = await wait_processed(database, delivery_id)

    assert stored.status == "done"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "handlers.webhooks.events"]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    message = warnings[0].getMessage()
    assert delivery_id in message and problem in message, message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_an_ordinary_comment_on_an_issue_is_not_a_malformed_payload(
        flareship_client: Any, database: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Shape is checked for what the handler takes: a plain issue (no `pull_request`) is not ours, silently."""
    event, payload = _comment(_drop("issue", "pull_request"))
    payload.pop("repository")
    delivery_id = f"issue-{uuid.uuid4()}"
    response = await post_webhook(flareship_client, event, payload, delivery_id=delivery_id)
    assert response.status == 202
    assert (await wait_processed(database, delivery_id)).status == "done"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
