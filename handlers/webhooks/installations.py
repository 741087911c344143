"""Installations: record which accounts installed the App and which repositories it may touch."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.store.installations import InstallationStore

log = logging.getLogger(__name__)
router = routing.Router()


def _store(ctx: Any) -> InstallationStore:
    store: InstallationStore = ctx.services.installations
    return store


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="suspend")
@router.register("installation", action="unsuspend")
async def installation_changed(event: sansio.Event, ctx: Any) -> None:
    installation = event.data["installation"]
    created = event.data.get("action") == "created"
    await _store(ctx).installed(installation, (event.data.get("repositories") or []) if created else ())
    log.info("installation %s (%s) %s", installation["id"], (installation.get("account") or {}).get("login"),
             event.data.get("action"))


@router.register("installation", action="deleted")
async def installation_deleted(event: sansio.Event, ctx: Any) -> None:
    installation = event.data["installation"]
    await _store(ctx).deleted(installation)
    log.info("installation %s deleted", installation["id"])


@router.register("installation_repositories")
async def installation_repositories_changed(event: sansio.Event, ctx: Any) -> None:
    installation = event.data["installation"]
    added = event.data.get("repositories_added") or []
    removed = event.data.get("repositories_removed") or []
    await _store(ctx).repositories_changed(installation, added, removed)
    log.info("installation %s: %d repositories added, %d removed", installation["id"], len(added), len(removed))
