"""What every pull-request trigger shares: read the policy, find out who and what, decide, ask the engine.

Comments, labels, merges and buttons differ only in where the command comes from; the reading
(config from the default branch, the actor's role, the pull request, the gates' facts) and the
deciding (`bot.policy.decide`) and the engine call live here once. Reads go through the client's
ETag cache, so repeating them costs 304s, not rate limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gidgethub import HTTPException

from bot.engine import DeployOptions, PrepareRequest, RepoConfig, parse_repo_config
from bot.engine.config import CONFIG_PATH
from bot.errors import FlareshipError
from bot.github.contents import read_file
from bot.policy import (
    CHANGES_ENVIRONMENT,
    Actor,
    CheckRun,
    CommitStatus,
    Decision,
    EnvironmentRules,
    Facts,
    LockInfo,
    Review,
    decide,
    gates_needed,
)
from handlers.webhooks.events import PullRequestBody

log = logging.getLogger(__name__)


class ConfigProblem(Exception):
    """The repository has no usable `.github/flareship.yml` on its default branch (message says why)."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    head_sha: str
    head_ref: str | None
    base_ref: str | None
    is_fork: bool
    state: str
    merged: bool


def ready(ctx: Any) -> bool:
    """PR workflows need the GitHub App (to answer on the pull request and report the deploy)."""
    if not ctx.services.github.configured:
        log.warning("PR workflow event ignored: the GitHub App is not configured")
        return False
    return True


def split(repository: str) -> tuple[str, str]:
    owner, _, name = repository.partition("/")
    return owner, name


def target_for(repository: str) -> str:
    """The engine's queue/lock key for a repository's deployments."""
    return repository


async def load_config(gh: Any, repository: str, default_branch: str) -> RepoConfig:
    """The policy config from the DEFAULT branch (never the PR head); ETag-cached."""
    try:
        raw = await read_file(gh, repository, CONFIG_PATH, default_branch)
    except HTTPException as exc:
        raise ConfigProblem(f"`{CONFIG_PATH}` could not be read from `{default_branch}` ({exc}).") from exc
    if raw is None:
        raise ConfigProblem(
            f"There is no `{CONFIG_PATH}` on `{default_branch}`, so Flareship has no environments here yet."
        )
    try:
        return parse_repo_config(raw.decode("utf-8", "replace"))
    except FlareshipError as exc:
        raise ConfigProblem(f"`{CONFIG_PATH}` on `{default_branch}` is invalid: {exc.message}") from exc


async def fetch_actor(gh: Any, repository: str, login: str, *, is_bot: bool = False) -> Actor:
    """The user's repository role (`role_name`), or no role when they are not a collaborator."""
    owner, name = split(repository)
    try:
        data = await gh.getitem("/repos/{owner}/{repo}/collaborators/{username}/permission",
                                {"owner": owner, "repo": name, "username": login})
    except HTTPException as exc:
        if int(exc.status_code) in (403, 404):
            return Actor(login, None, None, is_bot=is_bot)
        raise
    return Actor(login, data.get("role_name"), data.get("permission"), is_bot=is_bot)


async def fetch_pull_request(gh: Any, repository: str, number: int) -> PullRequest:
    owner, name = split(repository)
    data = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                            {"owner": owner, "repo": name, "pull_number": number})
    return pull_request_from(data, repository)


def pull_request_from(data: dict[str, Any], repository: str) -> PullRequest:
    """GitHub's pull-request object (GET /pulls/N, or a webhook's `pull_request`) as the fields used here."""
    return pull_request_of(PullRequestBody.model_validate(data), repository)


def pull_request_of(body: PullRequestBody, repository: str) -> PullRequest:
    head_repo = body.head.repo  # null when the fork was deleted
    is_fork = head_repo is None or head_repo.fork or (head_repo.full_name or repository) != repository
    return PullRequest(
        number=body.number,
        head_sha=body.head.sha or "",
        head_ref=body.head.ref,
        base_ref=body.base.ref,
        is_fork=is_fork,
        state=body.state,
        merged=bool(body.merged),
    )


async def current_lock(engine: Any, repository: str, environment: str) -> LockInfo | None:
    lock = await engine.get_lock(target_for(repository), environment)
    if not lock:
        return None
    get = lock.get if isinstance(lock, dict) else (lambda k, d=None: getattr(lock, k, d))
    return LockInfo(
        locked_by=get("actor") or get("locked_by"),
        locked_at=get("created_at") or get("locked_at"),
        reason=get("reason"),
    )


async def gather_facts(
    gh: Any, engine: Any, repository: str, action: str, rules: EnvironmentRules, *,
    sha: str | None, pull_request: int | None, is_fork: bool,
) -> Facts:
    """Only the facts this decision looks at: a staging deploy reads no reviews or checks."""
    owner, name = split(repository)
    needed = gates_needed(action, rules)
    reviews = check_runs = statuses = None
    after_sha = None
    if "approval" in needed and pull_request and sha:
        items = [item async for item in gh.getiter(
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews{?per_page}",
            {"owner": owner, "repo": name, "pull_number": pull_request, "per_page": 100})]
        reviews = tuple(Review((r.get("user") or {}).get("login", ""), r.get("state", ""), r.get("commit_id"),
                               r.get("submitted_at")) for r in items)
    if "checks" in needed and sha:
        data = await gh.getitem("/repos/{owner}/{repo}/commits/{ref}/check-runs{?per_page}",
                                {"owner": owner, "repo": name, "ref": sha, "per_page": 100})
        check_runs = tuple(CheckRun(r.get("name", ""), r.get("status", ""), r.get("conclusion"))
                           for r in data.get("check_runs") or [])
        combined = await gh.getitem("/repos/{owner}/{repo}/commits/{ref}/status",
                                    {"owner": owner, "repo": name, "ref": sha})
        statuses = tuple(CommitStatus(s.get("context", ""), s.get("state", ""))
                         for s in combined.get("statuses") or [])
    if "after" in needed and rules.after:
        live = await engine.live_release(target_for(repository), rules.after)
        after_sha = getattr(live, "sha", None) if live else None
    lock = await current_lock(engine, repository, rules.name) if action in CHANGES_ENVIRONMENT else None
    return Facts(head_sha=sha, is_fork=is_fork, reviews=reviews, check_runs=check_runs, statuses=statuses,
                 after_live_sha=after_sha, lock=lock)


async def check_policy(
    gh: Any, engine: Any, config: RepoConfig, repository: str, action: str, environment: str, actor: Actor, *,
    sha: str | None = None, pull_request: int | None = None, is_fork: bool = False,
) -> Decision:
    """Gather what the decision needs and decide (Allowed / Refused with a sentence)."""
    rules = EnvironmentRules.from_config(environment, config.environments.get(environment) or {})
    facts = await gather_facts(gh, engine, repository, action, rules, sha=sha, pull_request=pull_request,
                               is_fork=is_fork)
    return decide(action, actor, rules, allow_forks=config.allow_forks, facts=facts)


async def request_deploy(
    engine: Any, config: RepoConfig, *, repository: str, installation_id: int | None, sha: str,
    ref: str | None, pull_request: int | None, environment: str, trigger: str, actor: str | None,
    dry_run: bool = False,
) -> Any:
    """Persist and enqueue a deployment of `sha`; the engine reads the app description at that SHA."""
    request = PrepareRequest(
        environment=environment, repository=repository, ref=ref, sha=sha, installation_id=installation_id,
        pull_request=pull_request, trigger=trigger, actor=actor, repo_config=config,
    )
    return await engine.request_deploy(request, DeployOptions(dry_run=dry_run))


def refusal_text(exc: FlareshipError) -> str:
    """An engine refusal (busy/locked/config) as a sentence for the PR comment."""
    return f"{exc.message} ({exc.code})"
