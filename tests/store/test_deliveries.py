"""Delivery storage: dedupe, group commit, claiming in order, outcomes, UTC times (both databases)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bot.store import deliveries
from bot.store.base import utcnow
from bot.store.deliveries import DUPLICATE, REQUEUED, STORED, DeliveryStore, DeliveryWriter, NewDelivery


def make(delivery_id: str, event: str = "push", **kw) -> NewDelivery:
    values: dict[str, Any] = dict(action=None, installation_id=7, repository="acme/app", payload="{}", received_at=utcnow())
    values.update(kw)
    return NewDelivery(delivery_id=delivery_id, event=event, **values)


async def test_insert_reports_new_and_repeated_ids(database):
    async with database.begin() as conn:
        assert await deliveries.insert_deliveries(conn, [make("a"), make("b"), make("a")]) == [STORED, STORED, DUPLICATE]
    async with database.begin() as conn:
        assert await deliveries.insert_deliveries(conn, [make("b"), make("c")]) == [DUPLICATE, STORED]
    assert (await DeliveryStore(database).count_by_status())["pending"] == 3


async def test_a_full_batch_fits_one_statement_and_keeps_every_field(database):
    batch = [make(f"full{i}", event="issue_comment", action="created", installation_id=2**40 + i,
                  repository=None if i % 2 else "acme/app", payload=f'{{"n": {i}}}')
             for i in range(DeliveryWriter(database).max_batch)]
    async with database.begin() as conn:
        assert await deliveries.insert_deliveries(conn, batch) == [STORED] * len(batch)
    stored = await DeliveryStore(database).get("full7")
    assert (stored.event, stored.action, stored.installation_id, stored.repository, stored.payload) == (
        "issue_comment", "created", 2**40 + 7, None, '{"n": 7}')
    assert (stored.status, stored.attempts, stored.last_error) == ("pending", 0, None)


async def test_payloads_are_kept_compressed_on_sqlite_and_as_text_on_postgresql(database):
    """What the store hands back is the text it was given; on SQLite the file holds it in lz4's
    frame format (about a quarter of the size for a GitHub payload)."""
    import lz4.frame
    import sqlalchemy as sa

    from tests.plugins.webhooks import fixture_body

    text = fixture_body("issue_comment.created.pull_request").decode()
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make("big", payload=text), make("uni", payload='{"é": "✓"}')])
    assert (await DeliveryStore(database).get("big")).payload == text
    assert (await DeliveryStore(database).get("uni")).payload == '{"é": "✓"}'
    async with database.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT payload FROM webhook_deliveries WHERE delivery_id = 'big'"))).scalar()
    if database.dialect == "sqlite":
        assert isinstance(raw, bytes) and lz4.frame.decompress(raw).decode() == text
        assert len(raw) < len(text) / 3
    else:
        assert raw == text
    claimed = {d.delivery_id: d.payload for d in await DeliveryStore(database).claim_pending(10)}
    assert claimed == {"big": text, "uni": '{"é": "✓"}'}


async def test_payloads_stored_as_text_still_read_back(database):
    """Rows written before payloads were compressed (or by hand) hold plain text."""
    import sqlalchemy as sa

    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make("old")])
        await conn.execute(sa.text("UPDATE webhook_deliveries SET payload = '{\"legacy\": true}' WHERE delivery_id = 'old'"))
    assert (await DeliveryStore(database).get("old")).payload == '{"legacy": true}'


async def test_one_commit_sorts_new_repeated_and_redelivered_deliveries(database):
    """In one group commit: new ids are stored, a repeat of a handled delivery is ignored, a repeat
    of a failed one is queued again, and an id twice in the batch is stored once."""
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make("handled"), make("broken")])
    handled, broken = await DeliveryStore(database).claim_pending(2)
    await DeliveryStore(database).record_outcomes([handled.id], [(broken.id, "boom")])
    writer = DeliveryWriter(database)
    try:
        results = await asyncio.gather(*(writer.store(make(i)) for i in ("n1", "handled", "broken", "n2", "n1")))
    finally:
        await writer.stop()
    assert results == [STORED, DUPLICATE, REQUEUED, STORED, DUPLICATE]
    assert writer.batches == 1
    counts = await DeliveryStore(database).count_by_status()
    assert counts == {"pending": 3, "processing": 0, "done": 1, "failed": 0}
    assert (await DeliveryStore(database).get("n2")).payload == "{}"


async def test_two_writers_storing_the_same_ids_store_each_once(database, database_url):
    """Two processes (two engines here) racing on the same delivery ids: one row each, one True, no error."""
    from bot.store.db import Database

    other = Database(database_url)
    writers = [DeliveryWriter(database), DeliveryWriter(other)]
    try:
        ids = [f"race{i}" for i in range(40)]
        results = await asyncio.gather(*(w.store(make(i)) for i in ids for w in writers))
    finally:
        for writer in writers:
            await writer.stop()
        await other.close()
    assert [sorted(results[2 * n : 2 * n + 2]) for n in range(len(ids))] == [[DUPLICATE, STORED]] * len(ids)
    assert (await DeliveryStore(database).count_by_status())["pending"] == len(ids)


async def test_group_commit_writes_concurrent_deliveries_in_few_transactions(database):
    woken = []
    writer = DeliveryWriter(database, on_stored=lambda: woken.append(1))
    writer.start()
    try:
        results = await asyncio.gather(*(writer.store(make(f"g{i}")) for i in range(200)))
        assert results == [STORED] * 200
        assert writer.written == 200
        assert writer.batches < 20, "concurrent deliveries should share commits"
        assert await writer.store(make("g0")) == DUPLICATE
        assert woken
    finally:
        await writer.stop()
    assert (await DeliveryStore(database).count_by_status())["pending"] == 200


async def test_writer_stop_flushes_what_is_waiting(database):
    writer = DeliveryWriter(database)
    writer.start()
    pending = [asyncio.ensure_future(writer.store(make(f"s{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    await writer.stop()
    assert [await p for p in pending] == [STORED] * 5
    with pytest.raises(RuntimeError):
        await writer.store(make("late"))


MARKER = "payload-marker-7d1e"


def _logged(caplog) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


async def _store_all(writer: DeliveryWriter, batch: list[NewDelivery]) -> list:
    """Store concurrently (one group commit takes them together); exceptions returned, not raised."""
    writer.start()
    try:
        return await asyncio.gather(*(writer.store(d) for d in batch), return_exceptions=True)
    finally:
        await writer.stop()


async def test_a_row_the_store_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(database, caplog):
    """A number beyond BIGINT fails the whole INSERT on both databases: the writer then stores the
    batch row by row, so only that delivery is refused (DeliveryRefused: the intake answers 400)
    and the 29 others are stored; no log line carries a payload or the statement's parameters."""
    from bot.store.deliveries import DeliveryRefused

    batch = [make(f"b{i}", payload=f'{{"marker": "{MARKER} {i}"}}') for i in range(30)]
    batch[3] = make("b3", installation_id=2**64, payload=f'{{"marker": "{MARKER} bad"}}')
    results = await _store_all(DeliveryWriter(database), batch)
    assert isinstance(results[3], DeliveryRefused) and "out of range" in results[3].reason
    assert results[:3] + results[4:] == [STORED] * 29
    assert (await DeliveryStore(database).count_by_status())["pending"] == 29
    assert await DeliveryStore(database).get("b3") is None
    logged = _logged(caplog)
    assert "b3" in logged and "one by one" in logged
    assert MARKER not in logged and "parameters" not in logged.lower() and str(2**64) not in logged


@pytest.mark.parametrize("column, value", [("action", "a" * 101), ("repository", "acme/" + "r" * 251),
                                           ("action", "crea\x00ted"), ("event", "e" * 101)])
async def test_values_postgresql_cannot_store_are_refused_row_by_row(database, caplog, column, value):
    """PostgreSQL enforces the columns' sizes (and refuses NUL in text), SQLite does not: there the
    same rows are stored. The intake checks these before storing; this is the writer's own guard."""
    from bot.store.deliveries import DeliveryRefused

    batch = [make(f"p{i}", payload=f'{{"marker": "{MARKER}"}}') for i in range(26)]
    batch[5] = make("p5", payload=f'{{"marker": "{MARKER}"}}', **{column: value})
    results = await _store_all(DeliveryWriter(database), batch)
    assert results[:5] + results[6:] == [STORED] * 25
    if database.dialect == "sqlite":
        assert results[5] == STORED
        return
    assert isinstance(results[5], DeliveryRefused), results[5]
    assert "SQLSTATE 22" in results[5].reason
    logged = _logged(caplog)
    assert MARKER not in logged and value not in logged and "parameters" not in logged.lower()


async def test_an_unavailable_store_fails_the_batch_once_not_row_by_row(database):
    """A database that cannot be used (here: locked, OperationalError) is not retried row by row:
    every caller gets the error (the intake answers 503 and GitHub may redeliver)."""
    import sqlite3

    import sqlalchemy as sa

    class Down:
        dialect = database.dialect
        commits = 0

        async def run_write(self, fn, *args):
            Down.commits += 1
            raise sa.exc.OperationalError("INSERT ...", {"payload": MARKER}, Exception("server closed the connection"))

        async def run_sqlite_write(self, fn, *args):
            Down.commits += 1
            raise sqlite3.OperationalError("database is locked")

    results = await _store_all(DeliveryWriter(Down()), [make(f"u{i}") for i in range(30)])
    assert all(isinstance(r, (sa.exc.OperationalError, sqlite3.OperationalError)) for r in results)
    assert Down.commits == 2  # a batch of 25 and one of 5, not 30 single rows


async def test_claim_takes_oldest_first_and_counts_attempts(database):
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make(f"c{i}") for i in range(5)])
    first = await DeliveryStore(database).claim_pending(2)
    assert [d.delivery_id for d in first] == ["c0", "c1"]
    assert all(d.status == "processing" and d.attempts == 1 for d in first)
    second = await DeliveryStore(database).claim_pending(10)
    assert [d.delivery_id for d in second] == ["c2", "c3", "c4"]
    assert await DeliveryStore(database).claim_pending(10) == []

    await DeliveryStore(database).record_outcomes([first[0].id], [(first[1].id, "KeyError: 'x'")])
    done, failed = await DeliveryStore(database).get("c0"), await DeliveryStore(database).get("c1")
    assert done.status == "done" and done.processed_at is not None and done.last_error is None
    assert failed.status == "failed" and failed.last_error == "KeyError: 'x'"

    assert await DeliveryStore(database).requeue_interrupted() == 3
    async with database.begin() as conn:  # GitHub's "Redeliver": same id; only the failed one runs again
        assert await deliveries.insert_deliveries(conn, [make("c0"), make("c1"), make("c1")]) == [
            DUPLICATE, REQUEUED, DUPLICATE]
    again = await DeliveryStore(database).claim_pending(10)
    assert [d.delivery_id for d in again] == ["c1", "c2", "c3", "c4"]
    assert again[0].attempts == 2


async def test_error_text_is_redacted_and_truncated(database):
    from bot.logs import register_secret

    secret = "ghs_" + "S3cr3tInstallationToken0123456789"
    register_secret(secret)
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make("e1")])
    [claimed] = await DeliveryStore(database).claim_pending(1)
    await DeliveryStore(database).record_outcomes([], [(claimed.id, f"boom {secret} " + "x" * 10_000)])
    stored = await DeliveryStore(database).get("e1")
    assert secret not in stored.last_error
    assert len(stored.last_error) <= deliveries.MAX_ERROR_CHARS


async def test_times_come_back_as_utc(database):
    local = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, [make("t1", received_at=local)])
    stored = await DeliveryStore(database).get("t1")
    assert stored.received_at == local
    assert stored.received_at.utcoffset() == timedelta(0)


async def test_naive_times_are_refused(database):
    with pytest.raises(Exception, match="timezone-aware"):
        async with database.begin() as conn:
            await deliveries.insert_deliveries(conn, [make("n1", received_at=datetime(2026, 1, 1))])


async def test_prune_drops_handled_deliveries_past_their_retention_only(database, monkeypatch):
    monkeypatch.setattr(deliveries, "PRUNE_CHUNK", 3)  # several chunks
    now = utcnow()
    await _insert(database, [make(f"p{i}") for i in range(12)])
    claimed = await DeliveryStore(database).claim_pending(12)
    by_id = {d.delivery_id: d.id for d in claimed}
    done_old = [by_id[f"p{i}"] for i in range(5)]
    done_recent, failed_old, failed_recent = [by_id["p5"]], [by_id["p6"], by_id["p7"]], [by_id["p8"]]
    await DeliveryStore(database).record_outcomes(done_old + done_recent, [(pk, "boom") for pk in failed_old + failed_recent])
    await DeliveryStore(database).release([by_id["p9"]])  # p9 pending again; p10, p11 still processing

    import sqlalchemy as sa

    t = deliveries.webhook_deliveries
    async with database.begin() as conn:
        for pks, age in ((done_old, deliveries.KEEP_DONE), (failed_old, deliveries.KEEP_FAILED),
                         (done_recent, deliveries.KEEP_DONE / 2), (failed_recent, deliveries.KEEP_DONE * 1.5)):
            await conn.execute(sa.update(t).where(t.c.id.in_(pks)).values(processed_at=now - age - timedelta(minutes=1)))

    assert await DeliveryStore(database).prune(now) == 7
    kept = await DeliveryStore(database).count_by_status()
    assert kept == {"pending": 1, "processing": 2, "done": 1, "failed": 1}
    assert await DeliveryStore(database).prune(now) == 0


async def _insert(database, items) -> None:
    async with database.begin() as conn:
        await deliveries.insert_deliveries(conn, items)
