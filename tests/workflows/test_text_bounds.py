"""User text that Flareship stores or echoes is bounded, and the reply says when it was cut."""

from __future__ import annotations

from handlers.webhooks.commands import ECHO_CHARS, LOCK_REASON_CHARS
from tests.workflows.conftest import REPOSITORY


def notice(workflow, number: int = 7) -> str:
    [comment] = workflow.flareship_comments(number)
    return comment.body


async def test_a_huge_lock_reason_is_stored_shortened_and_the_reply_says_so(workflow):
    reason = "freeze " * (1024 * 1024 // 7)
    await workflow.comment(f"/lock staging {reason}", user="lead")

    lock = await workflow.services.engine.get_lock(REPOSITORY, "staging")
    stored = lock.reason if not isinstance(lock, dict) else lock["reason"]
    assert 0 < len(stored) <= LOCK_REASON_CHARS and reason.startswith(stored)
    text = notice(workflow)
    assert f"reason shortened to {LOCK_REASON_CHARS} characters" in text
    assert len(text) < 2000


async def test_a_short_lock_reason_is_kept_whole(workflow):
    await workflow.comment("/lock staging release freeze until Monday", user="lead")
    text = notice(workflow)
    assert "release freeze until Monday" in text and "shortened" not in text


async def test_usage_replies_echo_at_most_a_bounded_token(workflow):
    option = "--" + "x" * 100_000
    await workflow.comment(f"/deploy {option}")
    text = notice(workflow)
    assert "unknown option" in text and option[: ECHO_CHARS - 1] + "…" in text
    assert len(text) < 4000

    name = "z" * 100_000
    await workflow.comment(f"/{name}")
    assert f"Unknown command `/{name[: ECHO_CHARS - 1]}…`" in notice(workflow)
