"""The wait for a build, outside any environment lease (docs/build-workflow.md).

A queued deployment of an app with `build` may take its environment's lease only once its
artifact is downloaded. Until then it is parked: it stays `queued`, holds no lease (so another
deployment of the same environment runs meanwhile), its document names the runs it waits for
(`waiting_for_build`: the check run's title says "Waiting for build", its text links the run),
and it is looked at again every `poll_seconds` (BUILD_POLL_SECONDS) or when woken.
What the wait learned (since when, which runs were announced, the downloaded artifact) is
in the deployment's state, so a restarted engine carries on without re-announcing, without a
new deadline and without downloading the zip again (bot/engine/artifact_cache.py).

Anything final (the artifact expired, no run, every run done without it, the deadline passed)
lets the deployment run: step 1 then finds the same answer and fails with DEPLOY_001.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from bot.engine import artifacts
from bot.engine.artifact_cache import ArtifactCache
from bot.engine.build import BuildConfig
from bot.engine.journal import Journal
from bot.engine.model import STEP_NAMES, BuildRun, Deployment
from bot.engine.records import deployment_of
from bot.engine.state import StepState
from bot.errors import FlareshipError
from bot.github.actions import Artifact
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)

#: Deployments remembered as ready (no build, or artifact downloaded): bounded, oldest dropped.
MAX_REMEMBERED = 10_000


def wait_started(state: StepState, d: Deployment, now: datetime) -> datetime:
    """When this attempt's wait began (a retry is a new attempt and waits anew)."""
    wait = state.build_wait or {}
    if wait.get("attempt") == d.attempt and wait.get("since"):
        return datetime.fromisoformat(str(wait["since"]))
    return now


class BuildGate:
    """Answers the scheduler's "may this queued deployment take its lease now?"."""

    def __init__(self, store: DeploymentStore, journal: Journal, clock: Callable[[], datetime],
                 github: Callable[[int | None], Awaitable[Any]] | None, cache: ArtifactCache | None, *,
                 poll_seconds: float = artifacts.DEFAULT_POLL_SECONDS) -> None:
        self.store = store
        self.journal = journal
        self.clock = clock
        self.github = github
        self.cache = cache
        self.poll_seconds = poll_seconds
        #: (deployment id, queued at): a retry queues a deployment again and is looked at anew.
        self._ready: OrderedDict[tuple[str, datetime | None], None] = OrderedDict()
        #: Parked (deployment id, queued at) -> when to look again.
        self._parked: dict[tuple[str, datetime | None], datetime] = {}

    def wake(self) -> None:
        """Look at every parked deployment at the next pass (a workflow run finished)."""
        self._parked.clear()

    def _remember(self, key: tuple[str, datetime | None]) -> bool:
        self._parked.pop(key, None)
        self._ready[key] = None
        while len(self._ready) > MAX_REMEMBERED:
            self._ready.popitem(last=False)
        return True

    async def ready(self, deployment_id: str, queued_at: datetime | None = None) -> bool:
        key = (deployment_id, queued_at)
        if key in self._ready:
            return True
        again = self._parked.get(key)
        if again is not None and self.clock() < again:
            return False
        row = await self.store.get(deployment_id)
        if row is None or row.status != "queued":
            return True
        d = deployment_of(row)
        raw = (d.config or {}).get("build")
        if not raw or not d.repository or not d.sha or self.github is None or d.kind != "deploy":
            return self._remember(key)
        state = StepState.from_json(row.state)
        if state.build_artifact is not None:  # downloaded (by this or another replica): the run reads
            return self._remember(key)        # its cache, or fetches it again where the cache lacks it
        return await self._look(key, d, state, BuildConfig.model_validate(raw))

    async def _look(self, key: tuple[str, datetime | None], d: Deployment, state: StepState,
                    build: BuildConfig) -> bool:
        now = self.clock()
        since = wait_started(state, d, now)
        deadline = since + timedelta(minutes=build.timeout_minutes)
        try:
            gh = await self.github(d.installation_id)  # type: ignore[misc]  # checked by ready()
            found = await artifacts.look(gh, d.repository or "", d.sha or "", build)
            if isinstance(found, Artifact):
                state.build_artifact, _data = await artifacts.obtain(gh, d.repository or "", found, self.cache)
                state.build_wait = None
                return await self._unpark(key, d, state)
        except FlareshipError:
            return await self._unpark(key, d, state)  # final: step 1 reports it with the run's URL
        except Exception as exc:  # GitHub unreachable or answering oddly: look again later
            log.warning("deployment %s: cannot look for its build artifact (%s: %s)", d.id,
                        type(exc).__name__, exc)
            if now >= deadline:
                return await self._unpark(key, d, state)
            self._park(key, now)
            return False
        if now >= deadline:
            return await self._unpark(key, d, state)  # step 1 fails it: the deadline passed with the run(s) named
        previous = state.build_wait or {}
        announced: list[int] = list(previous.get("announced") or []) if previous.get("attempt") == d.attempt else []
        fresh = [run for run in found if run.id not in announced]
        wait: dict[str, Any] = {"attempt": d.attempt, "since": since.isoformat(),
                                "announced": [*announced, *(run.id for run in fresh)]}
        runs = [BuildRun(name=run.name or "workflow run", url=run.html_url) for run in found]
        shown = d.waiting_for_build != runs
        if state.build_wait != wait or shown:
            state.build_wait, d.waiting_for_build = wait, runs
            await self._save(d, state)
        for run in fresh:  # the log line's event carries the document: the check run says it waits
            await self.journal.log(d, artifacts.waiting_message(run), step=STEP_NAMES[0])
        if shown and not fresh:
            await self.journal.events.emit("status", d)
        self._park(key, now)
        return False

    async def _unpark(self, key: tuple[str, datetime | None], d: Deployment, state: StepState) -> bool:
        """Ready: save what the look learned and, when its check run said it waits, say queued again."""
        shown = bool(d.waiting_for_build)
        d.waiting_for_build = []
        if shown or state.build_artifact is not None:
            await self._save(d, state)
        if shown:
            await self.journal.events.emit("status", d)
        return self._remember(key)

    def _park(self, key: tuple[str, datetime | None], now: datetime) -> None:
        self._parked[key] = now + timedelta(seconds=self.poll_seconds)

    async def _save(self, d: Deployment, state: StepState) -> None:
        """The state and the document (what the check run shows), only while still queued (a cancel wins)."""
        await self.store.update_if(d.id, ("queued",), state=state.to_json(), document=d.model_dump(mode="json"),
                                   updated_at=self.clock())
