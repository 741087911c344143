"""Migration 0009: an existing database's releases get every container, from the state of the
deployment that made them, or from their own first-container columns where that state is gone."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from bot.engine.records import release_of
from bot.store.db import Database, load_table_modules
from bot.store.deployments import DeploymentStore, deployments, releases

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
APP, SIDECAR = "registry.example/acct/app@sha256:" + "a" * 64, "registry.example/acct/sidecar@sha256:" + "b" * 64


def _deployment(deployment_id: str, state: dict) -> dict:
    return {"id": deployment_id, "kind": "deploy", "target": "acme/shop", "environment": "staging",
            "script_name": "shop-staging", "status": "completed", "cancel_requested": False,
            "document": {}, "state": state, "created_at": T0, "updated_at": T0}


def _release(release_id: str, deployment_id: str, **values) -> dict:
    return {"id": release_id, "target": "acme/shop", "environment": "staging", "script_name": "shop-staging",
            "version_id": "v-" + release_id, "deployment_id": deployment_id, "created_at": T0, **values}


async def test_the_migration_records_every_container_of_existing_releases(empty_database_url):
    load_table_modules()
    database = Database(empty_database_url)
    try:
        await database.migrate("0008")
        old_releases = sa.table("releases", *(sa.column(c.name) for c in releases.columns if c.name != "containers"))
        async with database.begin() as conn:
            await conn.execute(deployments.insert().values(_deployment("dep_two", {
                "image": APP, "container_app_id": "app-1",
                "containers": {"MyContainer": {"image": APP, "image_digest": "sha256:" + "a" * 64, "app_id": "app-1"},
                               "Sidecar": {"image": SIDECAR, "image_digest": "sha256:" + "b" * 64,
                                           "app_id": "app-2"}}})))
            await conn.execute(old_releases.insert().values(
                _release("rel_two", "dep_two", image=APP, container_app_id="app-1")))
            await conn.execute(old_releases.insert().values(  # its deployment was pruned
                _release("rel_pruned", "dep_gone", image=APP, image_digest="sha256:" + "a" * 64,
                         container_app_id="app-1")))
            await conn.execute(old_releases.insert().values(_release("rel_plain", "dep_plain")))
        await database.migrate()

        store = DeploymentStore(database)
        two = release_of(await store.release_of("dep_two"))
        assert two is not None
        assert [(c.class_name, c.app_id, c.image) for c in two.containers] == [
            ("MyContainer", "app-1", APP), ("Sidecar", "app-2", SIDECAR)]
        pruned = release_of(await store.release_of("dep_gone"))
        assert pruned is not None
        assert [(c.class_name, c.app_id, c.image, c.image_digest) for c in pruned.containers] == [
            (None, "app-1", APP, "sha256:" + "a" * 64)]
        plain = release_of(await store.release_of("dep_plain"))
        assert plain is not None and plain.containers == []
    finally:
        await database.close()
