"""Removing a pull request's preview: Cloudflare first, then GitHub, then the PR comment.

Only what `bot.store.previews` recorded is removed. The row goes `removing` before the
Cloudflare delete, and every step is safe to repeat (a delete of what is gone answers False, a
GitHub deployment already set inactive is remembered in the row), so a crash between the
Cloudflare delete and the GitHub statuses ends consistent: the sweep (at start-up and
periodically) finishes any `removing` row. A failure is recorded with the next retry time
(exponential backoff) and shows in `/health/deployment`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.cloudflare.client import CloudflareClient
from bot.engine.preview_spec import preview_environment
from bot.github.pr_comment import CommentWriter
from bot.github.text import split_repo
from bot.store.pr_state import PullRequestState
from bot.store.previews import PreviewRecord, PreviewStore

log = logging.getLogger(__name__)

#: Backoff of a failed removal: 30 s, 60 s, 120 s, ... at most an hour.
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0

Connect = Callable[[str], Awaitable[tuple[CloudflareClient, str]]]
GitHubFactory = Callable[[int], Awaitable[Any]]


def retry_delay(attempts: int, base: float = RETRY_BASE_SECONDS) -> float:
    """Seconds before the next try after `attempts` failures so far (0 -> base)."""
    return float(min(base * 2 ** max(0, attempts), RETRY_MAX_SECONDS))


def describe(exc: BaseException) -> str:
    """A failure as one line for the row and the health page (Cloudflare/GitHub messages carry no secrets)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


class PreviewCleaner:
    """Deletes recorded previews on Cloudflare and retires their GitHub deployments."""

    def __init__(self, *, store: PreviewStore, connect: Connect, github: GitHubFactory | None,
                 pr_state: PullRequestState | None, comments: CommentWriter | None,
                 clock: Callable[[], datetime], retry_base: float = RETRY_BASE_SECONDS,
                 busy: Callable[[str, int], Awaitable[bool]] | None = None) -> None:
        self.store = store
        self.connect = connect
        self.github = github
        self.pr_state = pr_state
        self.comments = comments
        self.clock = clock
        self.retry_base = retry_base
        #: A deployment of the preview still running: deleting now would race its upload, so wait.
        self.busy = busy

    async def remove(self, repository: str, pull_request: int) -> bool:
        """Remove the PR's recorded preview; True when nothing is left to do (or there was nothing)."""
        record = await self.store.begin_removal(repository, pull_request)
        if record is None:
            return True
        if self.busy is not None and await self.busy(repository, pull_request):
            await self.store.removal_failed(repository, pull_request, "a deployment of the preview is still stopping",
                                            self.clock() + timedelta(seconds=min(self.retry_base, 5.0)))
            return False
        try:
            await self.delete_on_cloudflare(record)
            await self.retire_github_deployments(record)
            await self._comment(record)
        except Exception as exc:
            delay = retry_delay(record.attempts, self.retry_base)
            await self.store.removal_failed(repository, pull_request, describe(exc),
                                            self.clock() + timedelta(seconds=delay))
            log.warning("removing the preview of %s#%s failed (%s); retry in %.0fs", repository, pull_request,
                        describe(exc), delay)
            return False
        await self.store.removed(repository, pull_request)
        log.info("preview %s of %s#%s removed", record.preview_name, repository, pull_request)
        return True

    async def delete_on_cloudflare(self, record: PreviewRecord) -> None:
        client, account_id = await self.connect(record.environment)
        account_id = record.account_id or account_id
        if record.mode == "previews":
            await client.delete_preview(account_id, record.script_name, record.preview_name)
            return
        for application in record.container_apps:  # the application first: it runs the script's class
            await client.delete_container_application(account_id, application)
        await client.delete_script_if_present(account_id, record.script_name)

    async def retire_github_deployments(self, record: PreviewRecord) -> None:
        """Every GitHub deployment of `preview/pr-<N>` gets an `inactive` status (once each)."""
        if self.github is None or record.installation_id is None:
            return
        gh = await self.github(record.installation_id)
        owner, name = split_repo(record.repository)
        environment = preview_environment(record.pull_request)
        done = list(record.github_deployment_ids)
        async for item in gh.getiter("/repos/{owner}/{repo}/deployments{?environment,per_page}",
                                     {"owner": owner, "repo": name, "environment": environment, "per_page": 100}):
            gh_id = int(item["id"])
            if gh_id in done:
                continue
            await gh.post("/repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
                          {"owner": owner, "repo": name, "deployment_id": gh_id},
                          data={"state": "inactive", "description": "Preview removed: the pull request closed"})
            done.append(gh_id)
            await self.store.retired(record.repository, record.pull_request, done)

    async def _comment(self, record: PreviewRecord) -> None:
        if self.github is None or record.installation_id is None or self.comments is None or self.pr_state is None:
            return
        environment = preview_environment(record.pull_request)
        _claimed, _comment_id, state = await self.pr_state.comment(record.repository, record.pull_request)
        row = dict((state.get("environments") or {}).get(environment) or {})
        if not row and not _comment_id:
            return  # nothing was ever said about a preview on this PR
        row.update(status="removed", url=row.get("url") or record.url, deployment_url=None)
        gh = await self.github(record.installation_id)
        await self.comments.update(gh, record.repository, record.pull_request, environment=environment, row=row,
                                   notice=f"🗑️ The preview `{record.preview_name}` was removed: the pull request "
                                          "closed.")
