"""GitHub webhooks: the intake route and one router composed from one module per concern."""

from __future__ import annotations

from aiohttp import web
from gidgethub import routing

#: Every concern module exports a `router`; they are merged here, in one place.
router = routing.Router()


def setup(app: web.Application) -> None:
    """Register `POST /webhooks/github` (the intake comes with the foundation issue)."""
