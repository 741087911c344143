"""Who may do what where: the safety model as one pure function over gathered facts.

Handlers gather the facts a decision needs (the actor's role, the pull request, reviews, checks,
what is live, the lock) and call `decide(...)`; it answers `Allowed()` or `Refused(reason)` with a
sentence fit for the pull-request comment. `gates_needed(...)` tells the handler which facts to
fetch, so a staging deploy costs no review or check reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: GitHub's built-in repository roles, weakest first.
ROLES = ("read", "triage", "write", "maintain", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
#: The legacy `permission` field maps maintain -> write and triage -> read.
_LEGACY = {"admin": "admin", "write": "write", "read": "read"}

#: What each action asks of the actor. "env" = the environment's required permission.
ACTION_PERMISSION = {
    "deploy": "env",
    "promote": "env",
    "rollback": "env",
    "retry": "env",
    "cancel": "env",
    "prepare": "env",
    "validate": "env",
    "lock": "env",
    "unlock": "env",
    "merge": "env",  # an auto-deploy on merge: whoever merged needs it too (a lock is the engine's refusal)
    "status": None,
    "help": None,
}
#: Actions that ship the pull request's code (forks and production gates apply).
SHIPS_CODE = frozenset({"deploy", "promote"})
#: Actions that change an environment (a lock refuses them).
CHANGES_ENVIRONMENT = frozenset({"deploy", "promote", "rollback", "retry"})
#: Conclusions that count as green for `require_checks`.
GREEN = frozenset({"success", "neutral", "skipped"})
#: Flareship's own check runs never gate a deploy.
OWN_CHECK_PREFIX = "Deploy to "


def default_required_permission(environment: str) -> str:
    return "maintain" if environment == "production" else "write"


@dataclass(frozen=True)
class EnvironmentRules:
    """The policy part of one environment in `.github/flareship.yml` (read from the default branch)."""

    name: str
    required_permission: str = "write"
    allowed_users: tuple[str, ...] = ()
    require_approval: bool = False
    require_checks: bool = False
    after: str | None = None

    @classmethod
    def from_config(cls, name: str, env: Any) -> EnvironmentRules:
        """Build from the engine's RepoConfig environment (pydantic model or mapping)."""
        get = env.get if isinstance(env, Mapping) else (lambda key, default=None: getattr(env, key, default))
        required = get("required_permission", None) or default_required_permission(name)
        return cls(
            name=name,
            required_permission=str(required).lower(),
            allowed_users=tuple(get("allowed_users", None) or ()),
            require_approval=bool(get("require_approval", False)),
            require_checks=bool(get("require_checks", False)),
            after=get("after", None) or None,
        )


@dataclass(frozen=True)
class Actor:
    login: str
    role_name: str | None = None  # None: not a collaborator
    permission: str | None = None  # legacy field, used when role_name is a custom role
    is_bot: bool = False

    @property
    def role(self) -> str | None:
        """The effective built-in role (custom roles fall back to the legacy permission)."""
        if self.role_name and self.role_name.lower() in _RANK:
            return self.role_name.lower()
        if self.permission and self.permission.lower() in _LEGACY:
            return _LEGACY[self.permission.lower()]
        return None


@dataclass(frozen=True)
class Review:
    user: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    commit_id: str | None
    submitted_at: str | None = None


@dataclass(frozen=True)
class CheckRun:
    name: str
    status: str  # queued | in_progress | completed
    conclusion: str | None = None


@dataclass(frozen=True)
class CommitStatus:
    context: str
    state: str  # success | pending | failure | error


@dataclass(frozen=True)
class LockInfo:
    locked_by: str | None
    locked_at: datetime | str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Facts:
    """What the handler found out; a gate whose facts are None was not gathered (and is refused)."""

    head_sha: str | None = None
    is_fork: bool = False
    reviews: tuple[Review, ...] | None = None
    check_runs: tuple[CheckRun, ...] | None = None
    statuses: tuple[CommitStatus, ...] | None = None
    after_live_sha: str | None = None  # the SHA live on `rules.after`
    lock: LockInfo | None = None


@dataclass(frozen=True)
class Allowed:
    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Refused:
    reason: str
    gate: str = "permission"  # permission | fork | approval | checks | after | lock | bot

    def __bool__(self) -> bool:
        return False


Decision = Allowed | Refused


def gates_needed(action: str, rules: EnvironmentRules) -> frozenset[str]:
    """The extra facts `decide` will look at for this action (approval, checks, after)."""
    if action not in SHIPS_CODE:
        return frozenset()
    needed = set()
    if rules.require_approval:
        needed.add("approval")
    if rules.require_checks:
        needed.add("checks")
    if rules.after:
        needed.add("after")
    return frozenset(needed)


def has_permission(actor: Actor, rules: EnvironmentRules, action: str = "deploy") -> bool:
    required = ACTION_PERMISSION.get(action, "env")
    if required is None:
        return True
    if any(actor.login.lower() == user.lower() for user in rules.allowed_users):
        return True
    needed = rules.required_permission if required == "env" else required
    role = actor.role
    return role is not None and _RANK[role] >= _RANK.get(needed, _RANK["admin"])


def decide(
    action: str,
    actor: Actor,
    rules: EnvironmentRules,
    *,
    allow_forks: bool = False,
    facts: Facts = Facts(),
) -> Decision:
    """May `actor` do `action` in `rules.name`? Checks run cheapest and most basic first."""
    env = rules.name
    if actor.is_bot:
        return Refused("Flareship does not take commands from bots.", "bot")
    if not has_permission(actor, rules, action):
        role = actor.role or "no"
        users = " or be listed in its `allowed_users`" if rules.allowed_users else ""
        what = f"an auto-deploy to **{env}** on merge" if action == "merge" else f"`/{_verb(action)}` on **{env}**"
        return Refused(
            f"@{actor.login} has {role} access to this repository; {what} needs {rules.required_permission}{users}.",
            "permission",
        )
    if action in CHANGES_ENVIRONMENT and facts.lock is not None:
        return Refused(describe_lock(env, facts.lock), "lock")
    if action not in SHIPS_CODE:
        return Allowed()
    if facts.is_fork and not allow_forks:
        return Refused(
            "This pull request comes from a fork, and this repository does not deploy forks "
            "(`allow_forks: false` in `.github/flareship.yml`).",
            "fork",
        )
    sha = short(facts.head_sha)
    if rules.require_approval:
        refusal = _approval_refusal(env, facts)
        if refusal is not None:
            return refusal
    if rules.require_checks:
        refusal = _checks_refusal(env, facts)
        if refusal is not None:
            return refusal
    if rules.after and (not facts.head_sha or facts.after_live_sha != facts.head_sha):
            live = f"it runs {short(facts.after_live_sha)}" if facts.after_live_sha else "nothing is live there"
            return Refused(
                f"**{env}** only takes what is live on **{rules.after}** first: {sha} is not ({live}). "
                f"Deploy it to {rules.after} first.",
                "after",
            )
    return Allowed()


def describe_lock(environment: str, lock: LockInfo) -> str:
    when = lock.locked_at.strftime("%Y-%m-%d %H:%M UTC") if isinstance(lock.locked_at, datetime) else lock.locked_at
    who = f"@{lock.locked_by}" if lock.locked_by else "someone"
    text = f"**{environment}** is locked by {who}"
    if when:
        text += f" since {when}"
    text += f": {lock.reason}" if lock.reason else " (no reason given)"
    return text + f". Ask them, or `/unlock {environment}` once it is safe."


def latest_reviews(reviews: Iterable[Review]) -> dict[str, Review]:
    """Each reviewer's latest decisive review (comments and pending reviews do not count)."""
    latest: dict[str, Review] = {}
    for review in reviews:  # GitHub lists reviews oldest first
        state = review.state.upper()
        if state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[review.user.lower()] = review
    return latest


def _approval_refusal(env: str, facts: Facts) -> Refused | None:
    sha = short(facts.head_sha)
    if facts.reviews is None or not facts.head_sha:
        return Refused(f"**{env}** needs an approving review on {sha}, and none could be read.", "approval")
    latest = latest_reviews(facts.reviews)
    blocking = sorted(r.user for r in latest.values() if r.state.upper() == "CHANGES_REQUESTED")
    if blocking:
        return Refused(
            f"**{env}** needs an approving review, and changes are requested by "
            + ", ".join(f"@{u}" for u in blocking) + ".",
            "approval",
        )
    if any(r.state.upper() == "APPROVED" and r.commit_id == facts.head_sha for r in latest.values()):
        return None
    stale = any(r.state.upper() == "APPROVED" for r in latest.values())
    detail = "the approval is for an older commit" if stale else "there is none yet"
    return Refused(f"**{env}** needs an approving review on the head commit {sha}; {detail}.", "approval")


def _checks_refusal(env: str, facts: Facts) -> Refused | None:
    sha = short(facts.head_sha)
    if facts.check_runs is None or facts.statuses is None:
        return Refused(f"**{env}** needs green checks on {sha}, and they could not be read.", "checks")
    failing: list[str] = []
    pending: list[str] = []
    seen = 0
    for run in facts.check_runs:
        if run.name.startswith(OWN_CHECK_PREFIX):
            continue
        seen += 1
        if run.status != "completed":
            pending.append(run.name)
        elif (run.conclusion or "") not in GREEN:
            failing.append(run.name)
    latest_status: dict[str, CommitStatus] = {}
    for status in facts.statuses:  # GitHub lists statuses newest first
        latest_status.setdefault(status.context, status)
    for status in latest_status.values():
        if status.context.startswith(OWN_CHECK_PREFIX):
            continue
        seen += 1
        if status.state == "pending":
            pending.append(status.context)
        elif status.state != "success":
            failing.append(status.context)
    if failing:
        return Refused(f"**{env}** needs green checks on {sha}; failing: {', '.join(sorted(set(failing)))}.", "checks")
    if pending:
        return Refused(
            f"**{env}** needs green checks on {sha}; still running: {', '.join(sorted(set(pending)))}.", "checks"
        )
    if not seen:
        return Refused(f"**{env}** needs green checks on {sha}, and no check has reported yet.", "checks")
    return None


def short(sha: str | None) -> str:
    return f"`{sha[:7]}`" if sha else "`(unknown)`"


def _verb(action: str) -> str:
    return "deploy" if action == "promote" else action

