"""GitHub webhooks: the intake route and one router composed from one module per concern."""

from __future__ import annotations

from aiohttp import web
from gidgethub import routing

from handlers.webhooks import (
    builds,
    check_runs,
    comments,
    head_moves,
    installations,
    intake,
    labels,
    merges,
    previews,
)

#: Every concern module exports a `router`; they are merged here, in one place.
router = routing.Router(
    installations.router,
    comments.router,
    labels.router,
    merges.router,
    head_moves.router,
    check_runs.router,
    previews.router,
    builds.router,
)


def setup(app: web.Application) -> None:
    """Register `POST /webhooks/github` (verify, store, 202; the dispatcher runs `router` later)."""
    intake.setup(app)
