"""Installation webhooks, end to end: signed delivery -> store -> dispatcher -> installations tables."""

from __future__ import annotations

import copy

from bot.store.deliveries import DeliveryStore
from bot.store.installations import InstallationStore
from tests.plugins.webhooks import load_fixture, post_webhook
from tests.plugins.webhooks import wait_processed as processed


async def test_installation_lifecycle_is_recorded(flareship_client, database):
    created = load_fixture("installation.created")
    iid = created["installation"]["id"]
    assert (await post_webhook(flareship_client, "installation", created, delivery_id="i-1")).status == 202
    assert (await processed(database, "i-1")).status == "done"
    row = await InstallationStore(database).get(iid)
    assert row["account_login"] == "Codertocat" and row["account_type"] == "User"
    assert row["permissions"]["checks"] == "write"
    assert row["deleted_at"] is None and row["created_at"].tzinfo is not None
    assert await InstallationStore(database).repositories(iid) == ["Codertocat/Hello-World"]

    added = load_fixture("installation_repositories.added")
    assert (await post_webhook(flareship_client, "installation_repositories", added, delivery_id="i-2")).status == 202
    assert (await processed(database, "i-2")).status == "done"
    assert await InstallationStore(database).repositories(iid) == ["Codertocat/Hello-World", "Codertocat/Space"]
    assert await InstallationStore(database).for_repository("codertocat/space") == iid
    # A partial installation object in a repositories event does not overwrite what was recorded.
    assert (await InstallationStore(database).get(iid))["permissions"]["checks"] == "write"

    removed = copy.deepcopy(added)
    removed["action"] = "removed"
    removed["repositories_removed"], removed["repositories_added"] = removed["repositories_added"], []
    await post_webhook(flareship_client, "installation_repositories", removed, delivery_id="i-3")
    assert (await processed(database, "i-3")).status == "done"
    assert await InstallationStore(database).repositories(iid) == ["Codertocat/Hello-World"]

    deleted = copy.deepcopy(load_fixture("installation.deleted"))
    deleted["installation"]["id"] = iid
    await post_webhook(flareship_client, "installation", deleted, delivery_id="i-4")
    assert (await processed(database, "i-4")).status == "done"
    assert (await InstallationStore(database).get(iid))["deleted_at"] is not None
    assert await InstallationStore(database).repositories(iid) == []
    assert await InstallationStore(database).for_repository("Codertocat/Hello-World") is None


async def test_deleted_for_an_unknown_installation_is_recorded(flareship_client, database):
    deleted = load_fixture("installation.deleted")
    await post_webhook(flareship_client, "installation", deleted, delivery_id="i-unknown")
    assert (await processed(database, "i-unknown")).status == "done"
    assert (await InstallationStore(database).get(deleted["installation"]["id"]))["deleted_at"] is not None


async def test_a_replayed_installation_event_is_not_processed_twice(flareship_client, database):
    created = load_fixture("installation.created")
    await post_webhook(flareship_client, "installation", created, delivery_id="i-once")
    await processed(database, "i-once")
    again = await post_webhook(flareship_client, "installation", created, delivery_id="i-once")
    assert again.status == 200
    stored = await DeliveryStore(database).get("i-once")
    assert stored.status == "done" and stored.attempts == 1
