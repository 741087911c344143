"""GitHub webhooks: the intake route and one router composed from one module per concern."""

from __future__ import annotations

from aiohttp import web
from gidgethub import routing

from handlers.webhooks import installations, intake

#: Every concern module exports a `router`; they are merged here, in one place.
router = routing.Router(installations.router)


def setup(app: web.Application) -> None:
    """Register `POST /webhooks/github` (verify, store, 202; the dispatcher runs `router` later)."""
    intake.setup(app)
