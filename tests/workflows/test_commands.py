"""The comment grammar: examples, and properties over any text (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.webhooks.commands import (
    COMMANDS,
    USAGE,
    Command,
    UsageError,
    format_command,
    parse_command,
)

ENVS = ["staging", "production", "Preview-1"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/deploy", Command("deploy")),
        ("/deploy staging", Command("deploy", "staging")),
        ("  /DEPLOY   Staging  ", Command("deploy", "staging")),
        ("/deploy production --dry-run", Command("deploy", "production", dry_run=True)),
        ("/deploy --DRY-RUN staging", Command("deploy", "staging", dry_run=True)),
        ("/deploy --dry-run", Command("deploy", None, dry_run=True)),
        ("/deploy preview-1", Command("deploy", "Preview-1")),
        ("/prepare", Command("prepare")),
        ("/prepare production", Command("prepare", "production")),
        ("/validate staging", Command("validate", "staging")),
        ("/rollback staging", Command("rollback", "staging")),
        ("/rollback production to ver_123", Command("rollback", "production", version="ver_123")),
        ("/rollback production TO abc-1.2", Command("rollback", "production", version="abc-1.2")),
        ("/retry", Command("retry")),
        ("/retry staging", Command("retry", "staging")),
        ("/cancel", Command("cancel")),
        ("/status production", Command("status", "production")),
        ("/lock production freeze for the release", Command("lock", "production", reason="freeze for the release")),
        ("/lock staging", Command("lock", "staging")),
        ("/unlock staging", Command("unlock", "staging")),
        ("/help", Command("help")),
        ("/Help me please", Command("help")),
        ("\n\n  /deploy staging\nthanks!\n/deploy production", Command("deploy", "staging")),
        ("/deploy staging\r\nmore", Command("deploy", "staging")),
        ("\t/status", Command("status")),
    ],
)
def test_valid_commands(text, expected):
    assert parse_command(text, ENVS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "LGTM",
        "please /deploy staging",
        "thanks\n/deploy staging",  # only the first line counts
        "/",
        "/ deploy",
        "//deploy",
        "/usr/bin/env is broken",
        "/123",
        "> /deploy staging",
        "`/deploy staging`",
    ],
)
def test_ordinary_comments_are_ignored(text):
    assert parse_command(text, ENVS) is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("/deploi staging", "Unknown command `/deploi`"),
        ("/reviewers unassign @x", "Unknown command `/reviewers`"),
        ("/deploy qa", "unknown environment `qa`"),
        ("/deploy staging production", "one environment"),
        ("/deploy staging --force", "unknown option `--force`"),
        ("/deploy --dry-run --dry-run", "twice"),
        ("/rollback", "needs an environment"),
        ("/rollback staging v2", "/rollback ENV to VERSION"),
        ("/rollback staging to", "/rollback ENV to VERSION"),
        ("/rollback staging to $(rm)", "not a release id"),
        ("/lock", "needs an environment"),
        ("/unlock staging now", "exactly one environment"),
        ("/status staging production", "at most one"),
        ("/status --all", "unknown option"),
        ("/deploy st@ging", "not an environment name"),
    ],
)
def test_usage_errors(text, fragment):
    result = parse_command(text, ENVS)
    assert isinstance(result, UsageError)
    assert fragment in result.message
    assert result.usage == USAGE
    assert "/deploy [ENV] [--dry-run]" in result.render()


def test_without_environment_list_any_name_is_accepted_lowercased():
    assert parse_command("/deploy QA") == Command("deploy", "qa")


def test_no_environments_configured_answers_usage():
    result = parse_command("/deploy staging", [])
    assert isinstance(result, UsageError) and "none configured" in result.message


@given(st.text())
def test_never_raises_on_any_text(text):
    result = parse_command(text, ENVS)
    assert result is None or isinstance(result, (Command, UsageError))


@given(st.one_of(st.none(), st.integers(), st.binary()))
def test_non_text_is_ignored(value):
    assert parse_command(value, ENVS) is None


@given(st.text(), st.text())
def test_only_the_first_line_matters(first, rest):
    first = first.splitlines()[0] if first.splitlines() else first
    if not first.strip():
        return
    assert parse_command(first + "\n" + rest, ENVS) == parse_command(first, ENVS)


@given(st.text().filter(lambda t: not t.lstrip().startswith("/")))
def test_text_not_starting_with_slash_is_ignored(text):
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and lines[0].strip().startswith("/"):
        return  # a later non-blank line may start the comment after blank lines
    assert parse_command(text, ENVS) is None


_env = st.sampled_from(ENVS)
_version = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,20}", fullmatch=True)
_reason = st.lists(st.from_regex(r"[^\s]{1,10}", fullmatch=True), min_size=1, max_size=5).map(" ".join)

valid_commands = st.one_of(
    st.builds(Command, st.just("deploy"), st.one_of(st.none(), _env), dry_run=st.booleans()),
    st.builds(Command, st.sampled_from(["prepare", "validate", "retry", "cancel", "status"]),
              st.one_of(st.none(), _env)),
    st.builds(Command, st.just("rollback"), _env, version=st.one_of(st.none(), _version)),
    st.builds(Command, st.just("lock"), _env, reason=st.one_of(st.none(), _reason)),
    st.builds(Command, st.just("unlock"), _env),
    st.just(Command("help")),
)


@given(valid_commands, st.sampled_from(["", " ", "  \t"]), st.booleans(), st.text())
def test_generated_commands_round_trip(command, pad, shout, trailing):
    text = format_command(command)
    if shout:  # the command word is case-insensitive
        name, _, rest = text.partition(" ")
        text = name.upper() + (" " + rest if rest else "")
    assert parse_command(pad + text + pad + "\n" + trailing, ENVS) == command
    assert command.name in COMMANDS
