"""A pull request's head moved: deployments of the old head that have not started deploy nothing."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from handlers.webhooks.events import HeadMoved, parse_event

log = logging.getLogger(__name__)

router = routing.Router()

NOT_STARTED = ("queued", "initiated")


@router.register("pull_request", action="synchronize")
async def head_moved(event: sansio.Event, ctx: Any) -> None:
    moved = parse_event(HeadMoved, event)
    if moved is None:
        return
    before, after, number = moved.before, moved.after, moved.pull_request.number
    if not before or not number or not ctx.services.github.configured:
        return
    engine, reporter = ctx.services.engine, ctx.services.reporter
    for deployment in await engine.list(repository=moved.repository.full_name, limit=50):
        if deployment.pull_request == number and deployment.sha == before and deployment.status in NOT_STARTED:
            reporter.note_cancel(deployment.id, f"The pull request's head moved from `{before[:7]}` to "
                                                f"`{(after or '')[:7]}` before this deploy started; "
                                                "nothing was deployed.")
            try:
                await engine.cancel(deployment.id)
            except Exception as exc:  # it may have started meanwhile; then it runs to its end
                log.info("could not cancel %s after the head moved: %s", deployment.id, exc)
