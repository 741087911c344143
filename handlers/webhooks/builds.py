"""A GitHub Actions workflow run completed: deployments parked waiting for a build look again now.

Without this event a parked deployment notices its artifact at the next poll (bot/engine/
build_gate.py); with it, the deploy starts as soon as the run that uploads the artifact is done.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("workflow_run", action="completed")
async def workflow_run_completed(event: sansio.Event, ctx: Any) -> None:
    engine = ctx.services.engine
    if engine is None:
        return
    run = event.data.get("workflow_run") or {}
    log.info("workflow run %s of %s completed (%s); waiting builds look again", run.get("id"),
             str(run.get("head_sha") or "")[:7], run.get("conclusion"))
    engine.build_finished()
