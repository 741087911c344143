"""Comment commands: a pure parser for the first line of a pull-request comment.

`parse_command(text, environments=...)` answers a `Command`, `None` for an ordinary comment, or a
`UsageError` carrying the usage text (unknown command, bad arguments, unknown environment). It
never raises and does no I/O, so the grammar is tested without a loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

USAGE = """\
Flareship commands (first line of a pull-request comment):
  /deploy [ENV] [--dry-run]    deploy this pull request's head
  /prepare [ENV]               pre-flight checks and cost estimate, nothing changes
  /validate [ENV]              check ENV's Cloudflare credentials
  /rollback ENV [to VERSION]   return ENV to its previous (or the given) release
  /retry [ENV]                 resume this pull request's last failed deployment
  /cancel [ENV]                stop a queued or running deployment
  /status [ENV]                show the current state
  /lock ENV [reason...]        stop deploys to ENV until /unlock
  /unlock ENV
  /help
With previews on, ENV `preview` is this pull request's own preview (/deploy, /status, /cancel)."""

#: Commands whose ENV is optional; the handler fills in the config's default environment.
ENV_OPTIONAL = frozenset({"deploy", "prepare", "validate", "retry", "cancel", "status"})
ENV_REQUIRED = frozenset({"rollback", "lock", "unlock"})
COMMANDS = ENV_OPTIONAL | ENV_REQUIRED | {"help"}

#: User text kept or echoed back is bounded: a lock reason is stored, tokens are quoted in replies.
LOCK_REASON_CHARS = 200
ECHO_CHARS = 40

#: The syntax of a command name, an environment name and a release/version id.
_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_ENV = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}\Z")


@dataclass(frozen=True)
class Command:
    """A recognised command; `environment` is None when the user left an optional ENV out."""

    name: str
    environment: str | None = None
    dry_run: bool = False
    version: str | None = None
    reason: str | None = None
    #: The reason was longer than `LOCK_REASON_CHARS` and was cut (the reply says so).
    reason_shortened: bool = False


@dataclass(frozen=True)
class UsageError:
    """A slash command Flareship cannot run as written; `message` says why, `usage` how."""

    command: str | None
    message: str
    usage: str = USAGE

    def render(self) -> str:
        return f"{self.message}\n\n```\n{self.usage}\n```"


def echo(token: str) -> str:
    """A user's token as quoted in a reply: at most `ECHO_CHARS` characters, `…` when cut."""
    return token if len(token) <= ECHO_CHARS else token[: ECHO_CHARS - 1] + "…"


def first_line(text: str) -> str:
    """The comment's first non-blank line, stripped (commands live there and only there)."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_command(
    text: str | None,
    environments: Collection[str] | None = None,
) -> Command | UsageError | None:
    """Parse a comment. `environments` (the repository config's names) validates ENV
    case-insensitively and returns the config's spelling; None skips that check."""
    if not isinstance(text, str):
        return None
    line = first_line(text)
    if not line.startswith("/"):
        return None
    tokens = line[1:].split()
    if not tokens or line[1:2].isspace():
        return None
    name = tokens[0].lower()
    if not _NAME.match(name):
        return None  # "/usr/bin ...", "//", "/ 2": not a command, just text
    args = tokens[1:]
    if name not in COMMANDS:
        return UsageError(None, f"Unknown command `/{echo(name)}`.")
    try:
        return _PARSERS[name](name, args, environments)
    except _BadArguments as exc:
        return UsageError(name, str(exc))


class _BadArguments(Exception):
    pass


def _environment(name: str, token: str, environments: Collection[str] | None) -> str:
    if token.startswith("-"):
        raise _BadArguments(f"`/{name}`: unknown option `{echo(token)}`.")
    if not _ENV.match(token):
        raise _BadArguments(f"`/{name}`: `{echo(token)}` is not an environment name.")
    if environments is None:
        return token.lower()
    for known in environments:
        if known.lower() == token.lower():
            return known
    listed = ", ".join(sorted(environments)) or "none configured"
    raise _BadArguments(f"`/{name}`: unknown environment `{echo(token)}` (this repository has: {listed}).")


def _parse_deploy(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    dry_run = False
    env = None
    for token in args:
        if token.lower() == "--dry-run":
            if dry_run:
                raise _BadArguments("`/deploy`: `--dry-run` given twice.")
            dry_run = True
        elif token.startswith("-"):
            raise _BadArguments(f"`/deploy`: unknown option `{echo(token)}`.")
        elif env is None:
            env = _environment(name, token, environments)
        else:
            raise _BadArguments("`/deploy` takes one environment.")
    return Command(name, env, dry_run=dry_run)


def _parse_optional_env(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    if len(args) > 1:
        raise _BadArguments(f"`/{name}` takes at most one environment.")
    return Command(name, _environment(name, args[0], environments) if args else None)


def _parse_required_env(name: str, args: list[str], environments: Collection[str] | None, *,
                        extra: bool = False) -> str:
    if not args:
        raise _BadArguments(f"`/{name}` needs an environment.")
    env = _environment(name, args[0], environments)
    if len(args) > 1 and not extra:
        raise _BadArguments(f"`/{name}` takes exactly one environment.")
    return env


def _parse_rollback(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    env = _parse_required_env(name, args[:1], environments)
    rest = args[1:]
    if not rest:
        return Command(name, env)
    if len(rest) != 2 or rest[0].lower() != "to":
        raise _BadArguments("`/rollback`: write `/rollback ENV` or `/rollback ENV to VERSION`.")
    if not _VERSION.match(rest[1]):
        raise _BadArguments(f"`/rollback`: `{echo(rest[1])}` is not a release id.")
    return Command(name, env, version=rest[1])


def _parse_lock(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    env = _parse_required_env(name, args, environments, extra=True)
    reason = " ".join(args[1:]) or None
    if reason is not None and len(reason) > LOCK_REASON_CHARS:
        return Command(name, env, reason=reason[:LOCK_REASON_CHARS].rstrip(), reason_shortened=True)
    return Command(name, env, reason=reason)


def _parse_unlock(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    return Command(name, _parse_required_env(name, args, environments))


def _parse_help(name: str, args: list[str], environments: Collection[str] | None) -> Command:
    return Command("help")


_PARSERS: dict[str, Callable[[str, list[str], Collection[str] | None], Command]] = {
    "deploy": _parse_deploy,
    "prepare": _parse_optional_env,
    "validate": _parse_optional_env,
    "retry": _parse_optional_env,
    "cancel": _parse_optional_env,
    "status": _parse_optional_env,
    "rollback": _parse_rollback,
    "lock": _parse_lock,
    "unlock": _parse_unlock,
    "help": _parse_help,
}


def format_command(command: Command) -> str:
    """The canonical text of a command (parse_command(format_command(c)) == c)."""
    parts = ["/" + command.name]
    if command.environment:
        parts.append(command.environment)
    if command.dry_run:
        parts.append("--dry-run")
    if command.version:
        parts += ["to", command.version]
    if command.reason:
        parts.append(command.reason)
    return " ".join(parts)
