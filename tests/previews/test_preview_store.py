"""The record of previews Flareship created, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store.previews import ACTIVE, REMOVED, REMOVING, PreviewStore


async def _record(store: PreviewStore, number: int, repository: str = "acme/shop"):
    return await store.record(repository, number, installation_id=7, mode="script", environment="staging",
                              account_id="a" * 32, script_name=f"shop-staging-pr-{number}",
                              preview_name=f"pr-{number}", container_apps=[f"shop-staging-pr-{number}-app"])


async def test_lifecycle_of_a_record(database):
    store = PreviewStore(database)
    first = await _record(store, 17)
    assert (first.state, first.missing, first.attempts, first.container_apps) == \
        (ACTIVE, False, 0, ["shop-staging-pr-17-app"])
    await _record(store, 18)
    await _record(store, 1, repository="acme/other")
    assert await store.count_active("acme/shop") == 2
    assert await store.count_active("acme/shop", excluding=17) == 1
    await store.deployed("acme/shop", 17, preview_id="p1", url="https://pr-17.example", deployment_url="https://d1")
    await store.update("acme/shop", 17, missing=True)
    removing = await store.begin_removal("acme/shop", 17)
    assert removing is not None and removing.state == REMOVING and removing.url == "https://pr-17.example"
    again = await store.begin_removal("acme/shop", 17)  # a crash left it removing: still to finish
    assert again is not None and again.state == REMOVING
    assert await store.begin_removal("acme/shop", 99) is None
    later = datetime.now(UTC) + timedelta(seconds=30)
    await store.removal_failed("acme/shop", 17, "HTTP 500", later)
    await store.removal_failed("acme/shop", 17, "HTTP 502", later)
    row = await store.get("acme/shop", 17)
    assert row is not None and (row.attempts, row.last_error) == (2, "HTTP 502") and row.next_retry_at == later
    await store.retired("acme/shop", 17, [5, 3, 5])
    await store.removed("acme/shop", 17)
    row = await store.get("acme/shop", 17)
    assert row is not None and row.state == REMOVED and row.github_deployment_ids == [3, 5] and row.last_error is None
    assert [r.pull_request for r in await store.list(repository="acme/shop")] == [18]
    assert await store.begin_removal("acme/shop", 17) is None  # removed: nothing left to do
    # Reopened: the same row is active again, with a fresh history.
    again = await _record(store, 17)
    assert (again.state, again.github_deployment_ids, again.preview_id, again.attempts) == (ACTIVE, [], None, 0)
    assert await store.count_active("acme/shop") == 2
