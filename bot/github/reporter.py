"""Keeps GitHub in sync with the engine: check runs, GitHub deployments, the PR comment, reactions.

The top half is pure rendering (deployment -> check-run payload), tested without a loop; the PR
comment is `bot.github.pr_comment`. The `Reporter` subscribes to engine events and writes to GitHub through
one worker task per deployment, coalescing check-run updates to at most one write per
`interval` seconds per check run and always flushing the final state. Every GitHub object is
claimed in `bot.store.pr_state` before it is created, so a redelivery or a restart edits the
object it made instead of making a second one. Events live in one process's memory: a deployment
that ended on a replica that died before GitHub showed the end (or while GitHub kept failing) is
found by `recover`, which every replica runs every `recovery_seconds`, from `pr_reports`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from gidgethub.abc import GitHubAPI

from bot.engine.model import FINAL_STATUSES, Deployment, DeploymentEvent, LogLine, Step
from bot.engine.preview_spec import display_environment, is_preview_environment
from bot.github.pr_comment import COMMENT_MARKER, CommentWriter, comment_row, react, render_comment
from bot.github.text import MAX_OUTPUT_CHARS, cell, iso, short_sha, split_repo, truncate
from bot.store.pr_state import PullRequestState

#: Re-exported: the PR comment lives in `bot.github.pr_comment`, GitHub's text limits in `bot.github.text`.
__all__ = ["COMMENT_MARKER", "MAX_OUTPUT_CHARS", "CommentWriter", "Reporter", "comment_row", "react", "render_comment",
           "reporter_for", "truncate"]

log = logging.getLogger(__name__)

#: GitHub's limits on check-run output and actions (https://docs.github.com/en/rest/checks/runs).
MAX_TITLE_CHARS = 255
MAX_ACTIONS = 3
MAX_ACTION_LABEL, MAX_ACTION_DESCRIPTION, MAX_ACTION_IDENTIFIER = 20, 40, 20
MAX_DEPLOYMENT_DESCRIPTION = 140
LOG_LINES_KEPT = 60
#: Attempts at writing one piece of state before waiting for the next engine event.
MAX_REPORT_ATTEMPTS = 6
#: How far back `recover` looks for deployments GitHub does not show the end of.
RECOVERY_HORIZON = timedelta(hours=24)
CHECK_NAME_PREFIX = "Deploy to "

FINAL = FINAL_STATUSES
STEP_ICONS = {"pending": "⏳", "running": "🔄", "completed": "✅", "failed": "❌", "skipped": "⏭️"}


def check_run_name(environment: str) -> str:
    """`Deploy to staging`; every PR's preview (`preview/pr-17`) is `Deploy to preview`."""
    return f"{CHECK_NAME_PREFIX}{display_environment(environment)}"


def _duration(step: Step) -> str:
    if step.started_at and step.ended_at:
        seconds = (step.ended_at - step.started_at).total_seconds()
        return f"{seconds:.1f}s"
    return ""


def conclusion_for(deployment: Deployment) -> str | None:
    """The check-run conclusion of a final deployment (None while it runs)."""
    status = deployment.status
    if status == "completed":
        return "neutral" if deployment.options.dry_run else "success"
    if status in ("failed", "rolled_back"):
        return "failure"
    if status == "cancelled":
        return "cancelled"
    return None


def github_status(deployment: Deployment) -> str:
    status = deployment.status
    if status in ("queued", "initiated"):
        return "queued"
    if status == "in_progress":
        return "in_progress"
    return "completed"


def step_position(deployment: Deployment) -> tuple[int, Step | None]:
    """(1-based index, step) of the step running, failed, or next."""
    current = deployment.current_step
    if current is None:
        return len(deployment.steps), None
    return deployment.steps.index(current) + 1, current


def default_promote_target(deployment: Deployment) -> str | None:
    return "production" if deployment.environment == "staging" else None


def check_run_actions(deployment: Deployment, promote_target: str | None) -> list[dict[str, str]]:
    """Buttons by final state: Retry (failed), Roll back (live), Promote (live on a pre-stage)."""
    actions: list[dict[str, str]] = []
    if deployment.kind == "deploy" and deployment.status == "failed":
        actions.append({"label": "Retry", "identifier": "retry",
                        "description": f"Resume from the failed step on {deployment.environment}"})
    if (deployment.status == "completed" and not deployment.options.dry_run and deployment.kind == "deploy"
            and not is_preview_environment(deployment.environment)):  # a preview is redeployed, never rolled back
        actions.append({"label": "Roll back", "identifier": "rollback",
                        "description": f"Restore {deployment.environment}'s previous release"})
        if promote_target:
            actions.append({"label": f"Promote to {promote_target}"[:MAX_ACTION_LABEL]
                            if len(f"Promote to {promote_target}") <= MAX_ACTION_LABEL else "Promote",
                            "identifier": "promote",
                            "description": f"Deploy this commit to {promote_target}"})
    return [
        {"label": a["label"][:MAX_ACTION_LABEL], "identifier": a["identifier"][:MAX_ACTION_IDENTIFIER],
         "description": a["description"][:MAX_ACTION_DESCRIPTION]}
        for a in actions[:MAX_ACTIONS]
    ]


def check_run_title(deployment: Deployment, queue_position: int | None = None) -> str:
    env = deployment.environment
    total = len(deployment.steps)
    n, step = step_position(deployment)
    what = "Rollback of" if deployment.kind == "rollback" else "Deploy to"
    status = deployment.status
    if status == "queued" and deployment.waiting_for_build:
        names = ", ".join(dict.fromkeys(run.name for run in deployment.waiting_for_build))
        title = f"Waiting for build: {names} for {env}"
    elif status in ("queued", "initiated"):
        title = f"Queued: position {queue_position} for {env}" if queue_position else f"Queued for {env}"
    elif status == "in_progress":
        title = f"step {n}/{total}: {step.name if step else 'finishing'}"
    elif status == "completed":
        title = ("Dry run passed" if deployment.options.dry_run else
                 f"Live on {env}" if deployment.kind == "deploy" else f"{env} rolled back")
    elif status == "cancelled":
        title = f"Cancelled: {deployment.reason}" if deployment.reason else "Cancelled"
    else:
        failed = f"step {n}/{total}: {step.name}" if step else "the last step"
        title = f"{what} {env} failed at {failed}"
        if status == "rolled_back":
            title += " (rolled back)"
    return title[:MAX_TITLE_CHARS]


def check_run_summary(deployment: Deployment, queue_position: int | None = None) -> str:
    env = deployment.environment
    lines = []
    url = (deployment.urls or {}).get(env) or next(iter((deployment.urls or {}).values()), None)
    head = f"**{env}** · `{short_sha(deployment.sha)}` · deployment `{deployment.id}`"
    if deployment.actor:
        head += f" · by @{deployment.actor}"
    head += f" · {deployment.trigger}"
    lines.append(head)
    if deployment.kind == "rollback":
        target = deployment.rollback_target
        lines.append("")
        lines.append(f"Rolling back `{deployment.rollback_of}`"
                     + (f" to release `{target.id}` (`{short_sha(target.sha)}`)" if target else ""))
    if deployment.status == "queued" and deployment.waiting_for_build:
        lines.append("")
        runs = ", ".join(f"[{cell(run.name)}]({run.url})" for run in deployment.waiting_for_build)
        lines.append(f"⏳ Waiting for the build of `{short_sha(deployment.sha)}`: {runs}. "
                     f"It holds no lock on {env} meanwhile.")
    elif deployment.status in ("queued", "initiated"):
        lines.append("")
        where = f": position **{queue_position}** in the queue." if queue_position else "."
        lines.append(f"⏳ Waiting for {env}{where}")
    if url and deployment.status == "completed":
        lines.append("")
        lines.append(f"🌐 {url}")
    if deployment.error:
        lines.append("")
        where = f" at **{deployment.error.step}**" if deployment.error.step else ""
        lines.append(f"**{deployment.error.code}**{where}: {deployment.error.message}")
    if deployment.status == "rolled_back":
        lines.append("")
        lines.append(f"{env} was returned to its previous release.")
    if deployment.reason and deployment.status == "cancelled":
        lines.append("")
        lines.append(deployment.reason)
    lines += ["", "| # | Step | Status | Duration | Error |", "|---|---|---|---|---|"]
    for i, step in enumerate(deployment.steps, 1):
        error = f"{step.error_code}: {step.error}" if step.error_code and step.error else step.error
        lines.append(f"| {i} | {cell(step.name)} | {STEP_ICONS.get(step.status, '')} {step.status} | "
                     f"{_duration(step)} | {cell(error)[:500]} |")
    return truncate("\n".join(lines), MAX_OUTPUT_CHARS, keep="start")


def check_run_text(log_lines: list[LogLine]) -> str | None:
    if not log_lines:
        return None
    body = "\n".join(
        f"{line.timestamp.strftime('%H:%M:%S')} {line.level.upper():5} {line.message}" for line in log_lines
    ).replace("```", "'''")
    fence_room = MAX_OUTPUT_CHARS - len("```text\n\n```")
    return "```text\n" + truncate(body, fence_room, keep="end") + "\n```"


def render_check_run(
    deployment: Deployment,
    *,
    details_url: str,
    log_lines: Sequence[LogLine] = (),
    queue_position: int | None = None,
    promote_target: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The check-run body (POST without head_sha/name handled by the caller) for a deployment."""
    status = github_status(deployment)
    output: dict[str, Any] = {
        "title": check_run_title(deployment, queue_position),
        "summary": check_run_summary(deployment, queue_position),
    }
    text = check_run_text(list(log_lines))
    if text:
        output["text"] = text
    body: dict[str, Any] = {
        "name": check_run_name(deployment.environment),
        "status": status,
        "external_id": deployment.id,
        "details_url": details_url,
        "output": output,
    }
    if deployment.started_at and status != "queued":
        body["started_at"] = iso(deployment.started_at)
    if status == "completed":
        body["conclusion"] = conclusion_for(deployment)
        body["completed_at"] = iso(deployment.ended_at or now or datetime.now(UTC))
        body["actions"] = check_run_actions(deployment, promote_target)
    return body


# -- the reporter ----------------------------------------------------------------------------

@dataclass
class _Tracker:
    deployment: Deployment
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_LINES_KEPT))
    dirty: bool = True
    last_write: float | None = None
    seen_status: str | None = None  # last Flareship status seen (transitions are never coalesced)
    transitions: deque[tuple[str | None, Deployment]] = field(default_factory=deque)  # (previous status, snapshot)
    was_queued: bool = False
    logs_loaded: bool = False  # the stored log read once (a restarted reporter missed earlier events)
    task: asyncio.Task[None] | None = None

    @property
    def written_in_full(self) -> bool:
        """The deployment is final and GitHub shows all of it (nothing dirty, no transition left)."""
        return self.deployment.status in FINAL and not self.dirty and not self.transitions


GitHubFactory = Callable[[int], Awaitable[GitHubAPI]]


def repository_of(deployment: Deployment) -> str:
    """The repository of a deployment the reporter mirrors (`Reporter.reports` checked it has one)."""
    if not deployment.repository:
        raise ValueError(f"deployment {deployment.id} has no repository to report to")
    return deployment.repository


def installation_of(deployment: Deployment) -> int:
    """The GitHub App installation a mirrored deployment is reported through."""
    if deployment.installation_id is None:
        raise ValueError(f"deployment {deployment.id} has no installation to report through")
    return deployment.installation_id


class ReporterEngine(Protocol):
    """What the reporter needs from the engine (bot/engine/engine.py `Engine`)."""

    def subscribe(self, callback: Callable[[DeploymentEvent], Awaitable[None]]) -> Callable[[], None]: ...

    async def get(self, deployment_id: str) -> Deployment: ...

    async def logs(self, deployment_id: str, *, after: int = 0) -> list[LogLine]: ...

    async def queue_position(self, deployment_id: str) -> int | None: ...

    async def cancel(self, deployment_id: str) -> Deployment: ...


class Reporter:
    """Subscribes to the engine and mirrors each GitHub-triggered deployment on GitHub."""

    def __init__(
        self,
        *,
        engine: ReporterEngine,
        github: GitHubFactory,
        store: PullRequestState,
        public_url: str,
        interval: float = 1.0,
        retry_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        promote_target: Callable[[Deployment], str | None] = default_promote_target,
        details_url: Callable[[Deployment], str] | None = None,
        head_sha: Callable[[Deployment], Awaitable[str | None]] | None = None,
        comments: CommentWriter | None = None,
        recovery_seconds: float | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.engine = engine
        self.github = github
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.interval = interval
        self.retry_delay = retry_delay
        self.clock = clock
        self.promote_target = promote_target
        self.details_url = details_url or (lambda d: f"{self.public_url}/deployments/{quote(d.id)}")
        self.comments = comments or CommentWriter(store)
        #: Answers a PR deployment's current head SHA (checked when a queued deployment starts).
        self.head_sha = head_sha
        self._trackers: dict[str, _Tracker] = {}
        self._check_run_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        #: Why a deployment was cancelled, when Flareship cancelled it (the head moved).
        self.cancel_notes: dict[str, str] = {}
        #: Deployments whose final state is written: late events (a last log line) change nothing.
        self._finished: OrderedDict[str, str] = OrderedDict()
        self._unsubscribe: Callable[[], None] | None = None
        #: Seconds between `recover` passes, and how long a deployment may have ended before one
        #: takes it for unreported (None: no passes; tests call `recover`).
        self.recovery_seconds = recovery_seconds
        self.now = now
        self._recovering: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self.on_event)
        if self.recovery_seconds is not None and self._recovering is None:
            self._recovering = asyncio.get_running_loop().create_task(self._recover_every(self.recovery_seconds))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._recovering is not None:
            self._recovering.cancel()
            await asyncio.gather(self._recovering, return_exceptions=True)
            self._recovering = None
        await self.drain()

    async def recover(self, *, grace: float) -> int:
        """Report again each deployment that ended over `grace` seconds ago (and within a day)
        without GitHub showing its end in full: the replica that ran it died first, or GitHub kept
        failing. Every write is idempotent, so a replica and this pass may both write. Answers how
        many were taken up."""
        now = self.now()
        ids = await self.store.unreported(FINAL, ended_after=now - RECOVERY_HORIZON,
                                          ended_before=now - timedelta(seconds=grace))
        taken = 0
        for deployment_id in ids:
            tracker = self._trackers.get(deployment_id)
            if tracker is not None and tracker.task is not None and not tracker.task.done():
                continue  # being written here (a tracker whose task gave up is taken up again)
            try:
                deployment = await self.engine.get(deployment_id)
            except Exception as exc:  # unreadable now: the next pass tries again
                log.warning("could not read deployment %s to report it: %s", deployment_id, exc)
                continue
            if not self.reports(deployment):  # a REST deployment naming a repository: nothing on GitHub
                await self.store.mark_reported(deployment_id, deployment.status)
                continue
            log.info("deployment %s ended (%s) without GitHub showing it; reporting it again",
                     deployment_id, deployment.status)
            self._finished.pop(deployment_id, None)
            await self.on_event(DeploymentEvent(kind="status", deployment=deployment))
            taken += 1
        return taken

    async def _recover_every(self, seconds: float) -> None:
        while True:
            try:
                await self.recover(grace=seconds)
            except Exception as exc:  # the database or GitHub is away: the next pass tries again
                log.warning("recovering unreported deployments failed: %s", exc)
            await asyncio.sleep(seconds)

    def writing(self) -> bool:
        """Whether some tracked deployment's GitHub state is still being written."""
        return any(t.task is not None and not t.task.done() for t in self._trackers.values())

    async def drain(self, timeout: float = 30) -> None:
        """Wait until every tracked deployment's GitHub state is written (tests, shutdown)."""
        tasks = [t.task for t in self._trackers.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    @staticmethod
    def reports(deployment: Deployment) -> bool:
        """Only deployments that came from GitHub (a repository, SHA and installation) are mirrored."""
        return bool(deployment.repository and deployment.sha and deployment.installation_id)

    def note_cancel(self, deployment_id: str, reason: str) -> None:
        self.cancel_notes[deployment_id] = reason

    async def on_event(self, event: DeploymentEvent) -> None:
        deployment = event.deployment
        if not self.reports(deployment):
            return
        if deployment.status == "initiated" and deployment.id not in self._trackers:
            return  # prepared only (/prepare): nothing is deploying yet
        if deployment.id not in self._trackers and self._finished.get(deployment.id) == deployment.status:
            return  # a late event about a deployment already reported as final
        if deployment.status == "cancelled" and deployment.id in self.cancel_notes:
            deployment = deployment.model_copy(update={"reason": self.cancel_notes[deployment.id]})
        tracker = self._trackers.get(deployment.id)
        if tracker is None:
            tracker = self._trackers[deployment.id] = _Tracker(deployment)
        tracker.deployment = deployment
        if deployment.status != tracker.seen_status:
            tracker.transitions.append((tracker.seen_status, deployment))
            tracker.seen_status = deployment.status
        if event.kind == "log" and event.log is not None and (
                not tracker.logs or event.log.id > tracker.logs[-1].id):
            tracker.logs.append(event.log)
        tracker.dirty = True
        if tracker.task is None or tracker.task.done():
            tracker.task = asyncio.get_running_loop().create_task(self._work(tracker))
        if deployment.status in FINAL:
            # Someone else's turn may have come: refresh queued check runs of the same environment.
            for other in self._trackers.values():
                d = other.deployment
                if other is not tracker and d.status in ("queued", "initiated") and \
                        d.environment == deployment.environment and d.target == deployment.target:
                    other.dirty = True
                    if other.task is None or other.task.done():
                        other.task = asyncio.get_running_loop().create_task(self._work(other))

    async def _work(self, tracker: _Tracker) -> None:
        """Write transitions in order, then the check run at most once per `interval`; retry failures."""
        failures = 0
        try:
            while True:
                try:
                    if tracker.transitions:
                        previous, snapshot = tracker.transitions[0]
                        await self._transition(tracker, previous, snapshot)
                        tracker.transitions.popleft()
                        failures = 0
                        continue
                    if not tracker.dirty:
                        break
                    if tracker.last_write is not None:
                        wait = tracker.last_write + self.interval - self.clock()
                        if wait > 0:
                            await asyncio.sleep(wait)
                            continue
                    tracker.dirty = False
                    try:
                        await self._write_check_run(tracker, tracker.deployment)
                    except Exception:
                        tracker.dirty = True
                        raise
                    tracker.last_write = self.clock()
                    failures = 0
                except Exception as exc:  # GitHub hiccup: back off and write the same state again
                    failures += 1
                    if failures >= MAX_REPORT_ATTEMPTS:
                        log.exception("reporting deployment %s to GitHub failed %d times; waiting for the next event",
                                      tracker.deployment.id, failures)
                        break
                    delay = min(self.retry_delay * 2 ** (failures - 1), 30.0)
                    log.warning("reporting deployment %s to GitHub failed (%s); retry %d in %.2fs",
                                tracker.deployment.id, exc, failures, delay)
                    await asyncio.sleep(delay)
            if tracker.written_in_full:
                try:
                    await self.store.mark_reported(tracker.deployment.id, tracker.deployment.status)
                except Exception as exc:  # `recover` writes it again later: harmless
                    log.warning("could not record that %s is reported: %s", tracker.deployment.id, exc)
        finally:
            if tracker.written_in_full:
                self._trackers.pop(tracker.deployment.id, None)
                self.cancel_notes.pop(tracker.deployment.id, None)
                self._finished[tracker.deployment.id] = tracker.deployment.status
                while len(self._finished) > 2000:
                    self._finished.popitem(last=False)

    # -- transitions (GitHub deployment, comment, reactions) -----------------------------

    async def _transition(self, tracker: _Tracker, previous: str | None, deployment: Deployment) -> None:
        gh = await self.github(installation_of(deployment))
        if deployment.status == "in_progress":
            if tracker.was_queued and deployment.pull_request and self.head_sha is not None:
                head = await self.head_sha(deployment)
                if head and head != deployment.sha:
                    await self._cancel_moved_head(deployment, head)
                    return
            await self._github_deployment(gh, deployment, "in_progress")
        elif deployment.status in FINAL:
            if deployment.status != "cancelled" or (await self.store.github_deployment(deployment.id))[0]:
                state = {"completed": "success", "failed": "failure", "rolled_back": "failure",
                         "cancelled": "error"}[deployment.status]
                await self._github_deployment(gh, deployment, state)
            await self._final_feedback(gh, deployment)

    async def _cancel_moved_head(self, deployment: Deployment, head: str) -> None:
        self.note_cancel(deployment.id, f"The pull request's head moved from `{short_sha(deployment.sha)}` to "
                                        f"`{short_sha(head)}` before this deploy started; nothing was deployed.")
        log.info("PR head moved from %s to %s before %s started; cancelling", deployment.sha, head, deployment.id)
        try:
            await self.engine.cancel(deployment.id)
        except Exception as exc:  # already finished: nothing to stop
            log.warning("could not cancel %s after the head moved: %s", deployment.id, exc)

    async def _final_feedback(self, gh: GitHubAPI, deployment: Deployment) -> None:
        command = await self.store.command_for_deployment(deployment.id)
        if deployment.pull_request:
            await self.comments.update(
                gh, repository_of(deployment), deployment.pull_request, environment=deployment.environment,
                row=comment_row(deployment, details_url=self.details_url(deployment)),
            )
        if command is not None and command.comment_id:
            content = "rocket" if deployment.status == "completed" else "confused"
            await react(gh, repository_of(deployment), command.comment_id, content)

    async def _github_deployment(self, gh: GitHubAPI, deployment: Deployment, state: str) -> None:
        owner, name = split_repo(repository_of(deployment))
        claimed, gh_id, last_state = await self.store.github_deployment(deployment.id)
        if last_state == state:
            return  # already written (redelivered event, restart)
        if gh_id is None:
            if not claimed:
                await self.store.claim_github_deployment(deployment.id, repository_of(deployment),
                                                         deployment.environment)
            else:
                gh_id = await self._find_github_deployment(gh, owner, name, deployment)
            if gh_id is None:
                gh_id = await self._create_github_deployment(gh, owner, name, deployment)
                if gh_id is None:
                    return
            await self.store.set_github_deployment(deployment.id, github_deployment_id=gh_id)
        env = deployment.environment
        url = (deployment.urls or {}).get(env) or next(iter((deployment.urls or {}).values()), None)
        description = {
            "in_progress": f"Deploying {short_sha(deployment.sha)} to {env}",
            "success": f"{short_sha(deployment.sha)} is live on {env}",
            "failure": (f"Failed: {deployment.error.code}" if deployment.error else "Failed")
                       + (" (rolled back)" if deployment.status == "rolled_back" else ""),
            "error": deployment.reason or "Cancelled",
        }[state]
        body: dict[str, Any] = {
            "state": state,
            "log_url": self.details_url(deployment),
            "description": description[:MAX_DEPLOYMENT_DESCRIPTION],
            "environment": env,
            "auto_inactive": True,
        }
        if url and state == "success":
            body["environment_url"] = url
        await gh.post("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                      {"owner": owner, "repo": name, "deployment_id": gh_id}, data=body)
        await self.store.set_github_deployment(deployment.id, last_state=state)
        if state == "success" and env == "production":
            # auto_inactive skips production environments: retire the previous one by hand.
            previous = await self.store.previous_successful_github_deployment(
                repository_of(deployment), env, excluding=deployment.id)
            if previous is not None:
                await gh.post("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                              {"owner": owner, "repo": name, "deployment_id": previous[1]},
                              data={"state": "inactive", "description": f"Superseded by {deployment.id}"})
                await self.store.set_github_deployment(previous[0], last_state="inactive")

    async def _create_github_deployment(self, gh: GitHubAPI, owner: str, name: str, deployment: Deployment) -> int | None:
        env = deployment.environment
        ref = deployment.sha
        description = (f"Rollback of {deployment.rollback_of}" if deployment.kind == "rollback"
                       else f"Flareship {deployment.trigger} by {deployment.actor or 'unknown'}")
        data: dict[str, Any] = {
            "ref": ref,
            "task": "deploy",
            "environment": env,
            "auto_merge": False,
            "required_contexts": [],
            "production_environment": env == "production",
            "transient_environment": env.startswith(("preview", "pr-")),
            "description": description[:MAX_DEPLOYMENT_DESCRIPTION],
            "payload": {"flareship_deployment_id": deployment.id, "kind": deployment.kind,
                        "pull_request": deployment.pull_request},
        }
        created = await gh.post("/repos/{owner}/{repo}/deployments", {"owner": owner, "repo": name}, data=data)
        if not isinstance(created, dict) or "id" not in created:
            log.warning("GitHub created no deployment for %s: %s", deployment.id, created)
            return None
        return int(created["id"])

    @staticmethod
    async def _find_github_deployment(gh: GitHubAPI, owner: str, name: str, deployment: Deployment) -> int | None:
        async for item in gh.getiter("/repos/{owner}/{repo}/deployments{?sha,environment}",
                                     {"owner": owner, "repo": name, "sha": deployment.sha,
                                      "environment": deployment.environment}):
            payload = item.get("payload") or {}
            if isinstance(payload, dict) and payload.get("flareship_deployment_id") == deployment.id:
                return int(item["id"])
        return None

    # -- the check run --------------------------------------------------------------------

    async def _check_run_sha(self, deployment: Deployment) -> str:
        """Rollbacks report on the check run of the deployment they roll back."""
        if deployment.kind == "rollback" and deployment.rollback_of:
            try:
                return str((await self.engine.get(deployment.rollback_of)).sha or deployment.sha)
            except Exception:
                return str(deployment.sha)
        return str(deployment.sha)

    async def _write_check_run(self, tracker: _Tracker, deployment: Deployment) -> None:
        gh = await self.github(installation_of(deployment))
        repository, env = repository_of(deployment), deployment.environment
        owner, name = split_repo(repository)
        sha = await self._check_run_sha(deployment)
        position = None
        if deployment.status in ("queued", "initiated"):
            try:
                position = await self.engine.queue_position(deployment.id)
            except Exception:
                position = None
            if position is not None and position >= 1:
                tracker.was_queued = True  # it waits behind another: check the PR head when it starts
        if not tracker.logs_loaded:
            tracker.logs_loaded = True
            try:
                stored = await self.engine.logs(deployment.id)
            except Exception:
                stored = []
            merged = {line.id: line for line in [*stored, *tracker.logs]}
            tracker.logs = deque((merged[k] for k in sorted(merged)), maxlen=LOG_LINES_KEPT)
        body = render_check_run(
            deployment, details_url=self.details_url(deployment), log_lines=list(tracker.logs),
            queue_position=position, promote_target=self.promote_target(deployment),
        )
        lock = self._check_run_locks.setdefault((repository, sha, env), asyncio.Lock())
        async with lock:  # one check run per (repository, SHA, environment), even for two deployments
            if await self._superseded(repository, sha, env, deployment):
                return
            claimed, check_run_id = await self.store.check_run(repository, sha, env)
            if check_run_id is None:
                if not claimed:
                    await self.store.claim_check_run(repository, sha, env, deployment.id)
                else:
                    check_run_id = await self._find_check_run(gh, owner, name, sha, env)
            if check_run_id is None:
                created = await gh.post("/repos/{owner}/{repo}/check-runs", {"owner": owner, "repo": name},
                                        data={**body, "head_sha": sha})
                await self.store.set_check_run(repository, sha, env, check_run_id=int(created["id"]),
                                               deployment_id=deployment.id)
                return
            await gh.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}",
                           {"owner": owner, "repo": name, "check_run_id": check_run_id}, data=body)
            await self.store.set_check_run(repository, sha, env, deployment_id=deployment.id)

    async def _superseded(self, repository: str, sha: str, env: str, deployment: Deployment) -> bool:
        """True when the check run already shows a newer deployment (a late write must not undo it)."""
        shown = await self.store.check_run_deployment(repository, sha, env)
        if not shown or shown == deployment.id:
            return False
        try:
            other = await self.engine.get(shown)
        except Exception:
            return False
        return bool(other.created_at > deployment.created_at)

    @staticmethod
    async def _find_check_run(gh: GitHubAPI, owner: str, name: str, sha: str, env: str) -> int | None:
        data = await gh.getitem("/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,filter}",
                                {"owner": owner, "repo": name, "ref": sha, "check_name": check_run_name(env),
                                 "filter": "latest"})
        runs = data.get("check_runs") or []
        return int(runs[0]["id"]) if runs else None

    # -- used by handlers -----------------------------------------------------------------

    async def report_refusal(self, gh: GitHubAPI, repository: str, pull_request: int | None, reason: str) -> None:
        if pull_request:
            await self.comments.update(gh, repository, pull_request, notice=f"😕 {reason}")


async def pull_request_head(github: GitHubFactory, deployment: Deployment) -> str | None:
    """The PR's current head SHA (an ETag-cached read), for the head-moved check at start."""
    gh = await github(installation_of(deployment))
    owner, name = split_repo(repository_of(deployment))
    data = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                            {"owner": owner, "repo": name, "pull_number": deployment.pull_request})
    if deployment.trigger == "merge" or data.get("merged"):
        return None  # a merge commit is not the PR head
    return (data.get("head") or {}).get("sha")


def reporter_for(*, engine: ReporterEngine, github: GitHubFactory, pr_state: PullRequestState, comments: CommentWriter,
                 public_url: str, details_url: Callable[[Deployment], str], interval: float = 1.0,
                 retry_delay: float = 1.0, recovery_seconds: float | None = None) -> Reporter:
    """The PR reporter of a running app (built by the composition root, bot/app.py)."""
    return Reporter(
        engine=engine, github=github, store=pr_state, comments=comments, public_url=public_url,
        interval=interval, retry_delay=retry_delay, details_url=details_url, recovery_seconds=recovery_seconds,
        head_sha=lambda deployment: pull_request_head(github, deployment),
    )
