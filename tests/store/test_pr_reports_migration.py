"""Migration 0010: deployments that had ended before `pr_reports` existed count as reported, so
the first recovery pass after an upgrade writes nothing to GitHub again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store.db import Database, load_table_modules
from bot.store.deployments import deployments
from bot.store.pr_state import PullRequestState

FINAL = ("completed", "failed", "rolled_back", "cancelled")


def _deployment(deployment_id: str, status: str, *, repository: str | None = "acme/shop") -> dict:
    now = datetime.now(UTC)
    return {"id": deployment_id, "kind": "deploy", "target": "acme/shop", "environment": "staging",
            "script_name": "shop-staging", "repository": repository, "sha": "a" * 40, "status": status,
            "cancel_requested": False, "document": {}, "state": {}, "created_at": now, "updated_at": now}


async def test_ended_deployments_count_as_reported_after_the_upgrade(empty_database_url):
    load_table_modules()
    database = Database(empty_database_url)
    try:
        await database.migrate("0009")
        async with database.begin() as conn:
            for deployment_id, status in (("dep_done", "completed"), ("dep_failed", "failed"),
                                          ("dep_running", "in_progress")):
                await conn.execute(deployments.insert().values(_deployment(deployment_id, status)))
        await database.migrate()
        store = PullRequestState(database)
        window = {"ended_after": datetime.now(UTC) - timedelta(days=1), "ended_before": datetime.now(UTC)}
        assert await store.unreported(FINAL, **window) == []

        async with database.begin() as conn:  # ends after the upgrade, nobody reports it
            await conn.execute(deployments.update().where(deployments.c.id == "dep_running")
                               .values(status="completed", updated_at=datetime.now(UTC)))
        window["ended_before"] = datetime.now(UTC)
        assert await store.unreported(FINAL, **window) == ["dep_running"]
        await store.mark_reported("dep_running", "completed")
        assert await store.unreported(FINAL, **window) == []
    finally:
        await database.close()
