"""Installations: record which accounts installed the App and which repositories it may touch."""

from __future__ import annotations

import logging

from gidgethub import routing, sansio

from bot.dispatcher import WebhookContext
from bot.store import installations as store
from bot.store.db import Database

log = logging.getLogger(__name__)
router = routing.Router()


def _database(ctx: WebhookContext) -> Database:
    return ctx.services.database


@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="suspend")
@router.register("installation", action="unsuspend")
async def installation_changed(event: sansio.Event, ctx: WebhookContext) -> None:
    installation = event.data["installation"]
    async with _database(ctx).begin() as conn:
        await store.save_installation(conn, installation)
        if event.data.get("action") == "created":
            await store.add_repositories(conn, installation["id"], event.data.get("repositories") or [])
    log.info("installation %s (%s) %s", installation["id"], (installation.get("account") or {}).get("login"),
             event.data.get("action"))


@router.register("installation", action="deleted")
async def installation_deleted(event: sansio.Event, ctx: WebhookContext) -> None:
    installation = event.data["installation"]
    async with _database(ctx).begin() as conn:
        await store.save_installation(conn, installation, refresh=False)
        await store.mark_installation_deleted(conn, installation["id"])
    log.info("installation %s deleted", installation["id"])


@router.register("installation_repositories")
async def installation_repositories_changed(event: sansio.Event, ctx: WebhookContext) -> None:
    installation = event.data["installation"]
    added = event.data.get("repositories_added") or []
    removed = event.data.get("repositories_removed") or []
    async with _database(ctx).begin() as conn:
        await store.save_installation(conn, installation, refresh=False)
        await store.add_repositories(conn, installation["id"], added)
        await store.remove_repositories(conn, installation["id"], removed)
    log.info("installation %s: %d repositories added, %d removed", installation["id"], len(added), len(removed))
