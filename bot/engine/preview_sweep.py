"""The previews sweep: at start-up and every PREVIEW_SWEEP_SECONDS, reconcile the recorded previews.

For each preview Flareship recorded (and only those): a `removing` one whose retry is due is
removed again; an `active` one whose pull request closed (while Flareship was down, or the
close failed) is removed; an open pull request's preview that Cloudflare no longer has is marked
`missing`, so its next push redeploys it. Nothing else on the account is looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.cloudflare.errors import CloudflareError
from bot.engine.preview_cleanup import PreviewCleaner, describe
from bot.engine.preview_spec import preview_environment, preview_number
from bot.github.pr_comment import DEPLOYMENT_URL_KEY
from bot.github.text import iso, split_repo
from bot.store.previews import ACTIVE, REMOVING, PreviewRecord, PreviewStore

log = logging.getLogger(__name__)

#: Answers whether the PR's preview has a queued or running deployment (then it is not judged missing).
Busy = Callable[[str, int], Awaitable[bool]]


@dataclass
class SweepResult:
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class PreviewSweep:
    """Runs `sweep_once` now and then every `interval` seconds, in its own task."""

    def __init__(self, cleaner: PreviewCleaner, *, busy: Busy, interval: float,
                 clock: Callable[[], datetime]) -> None:
        self.cleaner = cleaner
        self.busy = busy
        self.interval = interval
        self.clock = clock
        self.last_sweep: datetime | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def sweep_once(self) -> SweepResult:
        result = SweepResult()
        store = self.cleaner.store
        for record in await store.list(states=(ACTIVE, REMOVING)):
            name = f"{record.repository}#{record.pull_request}"
            try:
                await self._reconcile(record, result, name)
            except Exception as exc:  # one preview's trouble must not stop the others
                log.warning("previews sweep: %s: %s", name, describe(exc))
                result.failed.append(name)
        self.last_sweep = self.clock()
        return result

    async def _reconcile(self, record: PreviewRecord, result: SweepResult, name: str) -> None:
        if record.state == REMOVING:
            if record.next_retry_at is None or record.next_retry_at <= self.clock():
                done = await self.cleaner.remove(record.repository, record.pull_request)
                (result.removed if done else result.failed).append(name)
            return
        if await self.busy(record.repository, record.pull_request):
            return
        state = await self._pull_request_state(record)
        if state == "closed":
            done = await self.cleaner.remove(record.repository, record.pull_request)
            (result.removed if done else result.failed).append(name)
            return
        if record.url and not record.missing and not await self._on_cloudflare(record):
            await store_missing(self.cleaner, record)
            result.missing.append(name)

    async def _pull_request_state(self, record: PreviewRecord) -> str | None:
        github = self.cleaner.github
        if github is None or record.installation_id is None:
            return None
        gh = await github(record.installation_id)
        owner, repo = split_repo(record.repository)
        data = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                                {"owner": owner, "repo": repo, "pull_number": record.pull_request})
        return str(data.get("state") or "") or None

    async def _on_cloudflare(self, record: PreviewRecord) -> bool:
        client, account_id = await self.cleaner.connect(record.environment)
        account_id = record.account_id or account_id
        try:
            if record.mode == "previews":
                return await client.get_preview(account_id, record.script_name, record.preview_name) is not None
            exists, _tag = await client.script_state(account_id, record.script_name)
            return exists
        except CloudflareError as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise

    async def health(self) -> dict[str, Any]:
        """For `/health/deployment`: removals still to do, the failing ones with their error and next retry."""
        pending = await self.cleaner.store.list(states=(REMOVING,))
        return {
            "lastSweep": iso(self.last_sweep) if self.last_sweep else None,
            "pendingRemovals": len(pending),
            "failingRemovals": [
                {"repository": r.repository, "pullRequest": r.pull_request, "preview": r.preview_name,
                 "attempts": r.attempts, "lastError": r.last_error,
                 "nextRetry": iso(r.next_retry_at) if r.next_retry_at else None}
                for r in pending if r.last_error],
        }

    # -- the background task ------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="flareship-previews-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = describe(exc)
                log.exception("previews sweep failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)


async def store_missing(cleaner: PreviewCleaner, record: PreviewRecord) -> None:
    log.info("preview %s of %s#%s is gone on Cloudflare; the next push redeploys it", record.preview_name,
             record.repository, record.pull_request)
    await cleaner.store.update(record.repository, record.pull_request, missing=True)


async def preview_busy(engine: Any, repository: str, number: int) -> bool:
    environment = preview_environment(number)
    return any(d.status in ("queued", "in_progress")  # "initiated" (prepared) never runs by itself
               for d in await engine.list(repository=repository, environment=environment, limit=20))


def previews_for(*, engine: Any, store: PreviewStore, github: Any, pr_state: Any, comments: Any,
                 interval: float, retry_base: float) -> tuple[PreviewCleaner, PreviewSweep]:
    """The cleaner and the sweep of a running app (built by the composition root, bot/app.py);
    `github` is an installation-client factory, or None where GitHub is not configured."""

    async def busy(repository: str, number: int) -> bool:
        return await preview_busy(engine, repository, number)

    cleaner = PreviewCleaner(store=store, connect=engine.preparer.client_for, github=github, pr_state=pr_state,
                             comments=comments, clock=engine.clock, retry_base=retry_base, busy=busy)
    return cleaner, PreviewSweep(cleaner, busy=busy, interval=interval, clock=engine.clock)


@contextlib.asynccontextmanager
async def running_previews(engine: Any, sweep: PreviewSweep) -> AsyncIterator[PreviewSweep]:
    """Record completed preview deployments, sweep once now, then periodically."""
    store = sweep.cleaner.store

    async def on_event(event: Any) -> None:
        await record_deployed(engine, store, event)

    unsubscribe = engine.subscribe(on_event)
    sweep.start()
    try:
        yield sweep
    finally:
        unsubscribe()
        await sweep.stop()


async def record_deployed(engine: Any, store: Any, event: Any) -> None:
    """A preview deployment completed: its URLs (and Preview id) go into the record; it is there again."""
    d = event.deployment
    number = preview_number(d.environment)
    if event.kind != "status" or d.status != "completed" or number is None or not d.repository:
        return
    row = await engine.store.get(d.id)
    state = (row.state if row is not None else None) or {}
    try:
        await store.deployed(d.repository, number, preview_id=state.get("preview_id"), url=d.urls.get(d.environment),
                             deployment_url=d.urls.get(DEPLOYMENT_URL_KEY))
    except Exception:
        log.exception("could not record the URLs of preview deployment %s", d.id)
