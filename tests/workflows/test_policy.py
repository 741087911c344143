"""The safety model as a matrix: role x environment x fork x gates, plus each gate's edges."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from bot.policy import (
    ROLES,
    Actor,
    Allowed,
    CheckRun,
    CommitStatus,
    EnvironmentRules,
    Facts,
    LockInfo,
    Refused,
    Review,
    decide,
    gates_needed,
    latest_reviews,
)

HEAD = "a" * 40
OLD = "b" * 40
STAGING = EnvironmentRules.from_config("staging", {"auto_deploy": True})
PRODUCTION = EnvironmentRules.from_config(
    "production",
    {"required_permission": "maintain", "require_approval": True, "require_checks": True, "after": "staging"},
)
GREEN_FACTS = Facts(
    head_sha=HEAD,
    reviews=(Review("carol", "APPROVED", HEAD),),
    check_runs=(CheckRun("tests", "completed", "success"), CheckRun("Deploy to staging", "completed", "failure")),
    statuses=(CommitStatus("ci/lint", "success"),),
    after_live_sha=HEAD,
)


def test_defaults_from_config():
    assert STAGING.required_permission == "write"
    assert EnvironmentRules.from_config("production", {}).required_permission == "maintain"
    assert PRODUCTION.after == "staging" and PRODUCTION.require_approval and PRODUCTION.require_checks


GATE_CASES = {
    "all green": (GREEN_FACTS, None),
    "no approval": (Facts(**{**GREEN_FACTS.__dict__, "reviews": ()}), "approval"),
    "red checks": (
        Facts(**{**GREEN_FACTS.__dict__, "check_runs": (CheckRun("tests", "completed", "failure"),)}),
        "checks",
    ),
    "not on staging": (Facts(**{**GREEN_FACTS.__dict__, "after_live_sha": OLD}), "after"),
}


@pytest.mark.parametrize(
    "role, env, fork, gates",
    list(itertools.product((*ROLES, None), ["staging", "production"], [False, True], list(GATE_CASES))),
)
def test_permission_matrix(role, env, fork, gates):
    rules = STAGING if env == "staging" else PRODUCTION
    facts, failing_gate = GATE_CASES[gates]
    facts = Facts(**{**facts.__dict__, "is_fork": fork})
    decision = decide("deploy", Actor("dev", role_name=role), rules, facts=facts)

    needed = "write" if env == "staging" else "maintain"
    if role is None or ROLES.index(role) < ROLES.index(needed):
        expected = "permission"
    elif fork:
        expected = "fork"
    elif env == "production" and failing_gate:
        expected = failing_gate
    else:
        expected = None
    if expected is None:
        assert decision == Allowed() and decision
    else:
        assert isinstance(decision, Refused) and not decision
        assert decision.gate == expected, decision.reason
        assert decision.reason.endswith(".")


def test_forks_allowed_when_configured():
    facts = Facts(head_sha=HEAD, is_fork=True)
    assert decide("deploy", Actor("dev", "write"), STAGING, allow_forks=True, facts=facts)


def test_permission_refusal_names_the_need():
    refused = decide("deploy", Actor("reader", "read"), PRODUCTION, facts=GREEN_FACTS)
    assert refused.reason == "@reader has read access to this repository; `/deploy` on **production** needs maintain."


def test_allowed_users_beat_role():
    rules = EnvironmentRules.from_config("production", {"allowed_users": ["Release-Bot-Human"]})
    assert decide("deploy", Actor("release-bot-human", None), rules)
    refused = decide("deploy", Actor("someone", "write"), rules)
    assert "allowed_users" in refused.reason


def test_custom_role_falls_back_to_legacy_permission():
    assert Actor("x", role_name="deployer", permission="write").role == "write"
    assert decide("deploy", Actor("x", role_name="deployer", permission="write"), STAGING)
    assert not decide("deploy", Actor("x", role_name="auditor", permission="read"), STAGING)


def test_bots_are_refused():
    assert decide("deploy", Actor("dependabot[bot]", "admin", is_bot=True), STAGING).gate == "bot"


def test_status_and_help_need_nothing():
    assert decide("status", Actor("stranger"), PRODUCTION)
    assert decide("help", Actor("stranger"), PRODUCTION)


@pytest.mark.parametrize("action", ["rollback", "retry", "lock", "unlock", "cancel", "prepare", "validate"])
def test_other_actions_need_the_environment_permission_but_no_gates(action):
    assert decide(action, Actor("m", "maintain"), PRODUCTION, facts=Facts(head_sha=HEAD, is_fork=True))
    assert decide(action, Actor("w", "write"), PRODUCTION).gate == "permission"


def test_lock_refuses_changes_and_says_who_when_why():
    lock = LockInfo("alice", datetime(2026, 11, 26, 8, 30, tzinfo=UTC), "release freeze")
    refused = decide("deploy", Actor("dev", "admin"), STAGING, facts=Facts(head_sha=HEAD, lock=lock))
    assert refused.gate == "lock"
    assert "@alice" in refused.reason and "2026-11-26 08:30 UTC" in refused.reason and "release freeze" in refused.reason
    assert decide("rollback", Actor("dev", "admin"), STAGING, facts=Facts(lock=lock)).gate == "lock"
    assert decide("unlock", Actor("dev", "admin"), STAGING, facts=Facts(lock=lock))


def test_gates_needed_only_for_shipping_code():
    assert gates_needed("deploy", STAGING) == frozenset()
    assert gates_needed("deploy", PRODUCTION) == {"approval", "checks", "after"}
    assert gates_needed("promote", PRODUCTION) == {"approval", "checks", "after"}
    assert gates_needed("rollback", PRODUCTION) == frozenset()


def test_latest_review_per_user_wins():
    reviews = (
        Review("carol", "CHANGES_REQUESTED", OLD),
        Review("carol", "COMMENTED", HEAD),
        Review("carol", "APPROVED", HEAD),
        Review("dave", "APPROVED", HEAD),
        Review("dave", "DISMISSED", HEAD),
    )
    latest = latest_reviews(reviews)
    assert latest["carol"].state == "APPROVED" and latest["dave"].state == "DISMISSED"
    facts = Facts(**{**GREEN_FACTS.__dict__, "reviews": reviews})
    assert decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)


def test_approval_on_an_older_commit_does_not_count():
    facts = Facts(**{**GREEN_FACTS.__dict__, "reviews": (Review("carol", "APPROVED", OLD),)})
    refused = decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)
    assert refused.gate == "approval" and "older commit" in refused.reason


def test_changes_requested_blocks_even_with_an_approval():
    facts = Facts(**{**GREEN_FACTS.__dict__, "reviews": (
        Review("carol", "APPROVED", HEAD), Review("dave", "CHANGES_REQUESTED", HEAD))})
    refused = decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)
    assert refused.gate == "approval" and "@dave" in refused.reason


@pytest.mark.parametrize(
    "runs, statuses, fragment",
    [
        ((CheckRun("build", "in_progress"),), (), "still running: build"),
        ((), (CommitStatus("ci/lint", "failure"),), "failing: ci/lint"),
        ((), (CommitStatus("ci/lint", "error"),), "failing: ci/lint"),
        ((), (CommitStatus("ci/lint", "pending"),), "still running: ci/lint"),
        ((CheckRun("Deploy to staging", "completed", "failure"),), (), "no check has reported"),
        ((), (), "no check has reported"),
    ],
)
def test_checks_gate(runs, statuses, fragment):
    facts = Facts(**{**GREEN_FACTS.__dict__, "check_runs": runs, "statuses": statuses})
    refused = decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)
    assert refused.gate == "checks" and fragment in refused.reason


def test_newest_status_per_context_counts():
    statuses = (CommitStatus("ci/lint", "success"), CommitStatus("ci/lint", "failure"))  # newest first
    facts = Facts(**{**GREEN_FACTS.__dict__, "statuses": statuses})
    assert decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)


def test_neutral_and_skipped_are_green():
    runs = (CheckRun("a", "completed", "neutral"), CheckRun("b", "completed", "skipped"))
    facts = Facts(**{**GREEN_FACTS.__dict__, "check_runs": runs, "statuses": ()})
    assert decide("deploy", Actor("m", "admin"), PRODUCTION, facts=facts)


def test_gate_facts_not_gathered_are_refused():
    refused = decide("deploy", Actor("m", "admin"), PRODUCTION, facts=Facts(head_sha=HEAD))
    assert refused.gate == "approval"


def test_after_gate_when_nothing_live():
    facts = Facts(**{**GREEN_FACTS.__dict__, "after_live_sha": None})
    refused = decide("promote", Actor("m", "admin"), PRODUCTION, facts=facts)
    assert refused.gate == "after" and "nothing is live there" in refused.reason
