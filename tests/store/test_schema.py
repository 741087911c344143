"""The migrated schema is exactly what the table modules declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.store.base import metadata
from bot.store.db import Database, load_table_modules


def _schema_diff(connection):
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


async def test_migrations_create_exactly_the_metadata(empty_database_url):
    load_table_modules()
    database = Database(empty_database_url)
    try:
        assert await database.current_revision() is None
        await database.migrate()
        await database.migrate()  # idempotent: a second start-up changes nothing
        async with database.connect() as conn:
            diff = await conn.run_sync(_schema_diff)
        assert diff == [], f"schema differs from bot.store metadata (a table without a migration?): {diff}"
        assert await database.current_revision() is not None
        assert "webhook_deliveries" in metadata.tables and "installations" in metadata.tables
    finally:
        await database.close()


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path):
    import sqlalchemy as sa

    database = Database(f"sqlite:///{tmp_path / 'nested' / 'f.db'}")  # plain sqlite:// URL, missing folder
    try:
        async with database.connect() as conn:
            assert (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(sa.text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
            assert (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar() >= 1000
    finally:
        await database.close()


async def test_sqlite_checkpoints_off_the_commit_path(tmp_path):
    """Commits never checkpoint (no fsync inside an ack); a background checkpoint and the one at
    close bring the WAL back into the database file."""
    import os
    import sqlite3

    import sqlalchemy as sa

    path = tmp_path / "c.db"
    database = Database(f"sqlite:///{path}")
    try:
        async with database.connect() as conn:
            assert (await conn.execute(sa.text("PRAGMA wal_autocheckpoint"))).scalar() == 0

        def write(conn, n):
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 5000} for _ in range(n)])

        await database.run_write(write, 200)
        assert os.path.getsize(f"{path}-wal") > 0
        async with database.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES ('z')"))
    finally:
        await database.close()
    assert not os.path.exists(f"{path}-wal") or os.path.getsize(f"{path}-wal") == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 201


async def test_nested_sqlite_write_transactions_fail_fast(tmp_path):
    import pytest

    database = Database(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        async with database.begin():
            with pytest.raises(RuntimeError, match="inside another"):
                async with database.begin():
                    pass
        async with database.begin():  # the lock was released
            pass
    finally:
        await database.close()


async def test_sqlite_wal_is_reset_under_writes_that_never_pause(tmp_path, monkeypatch):
    """A WAL only restarts from its beginning when writers pause; past the size limit the
    checkpointer makes that pause, so the file stays bounded while writes keep succeeding."""
    import asyncio
    import os

    import sqlalchemy as sa

    from bot.store import db as db_module

    monkeypatch.setattr(db_module, "WAL_SIZE_LIMIT", 256 * 1024)
    path = tmp_path / "w.db"
    database = Database(f"sqlite:///{path}", checkpoint_interval=0.01)

    def write(conn, n):
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x TEXT)"))
        conn.execute(sa.text("INSERT INTO t VALUES (:x)"), [{"x": "y" * 4000} for _ in range(n)])

    # Writes of 40 KB without a pause longer than a loop turn, until the WAL was reset (it shrank
    # back to the size limit) twice after 12 MB. When the checkpoint thread gets the CPU depends
    # on the machine's load, so the bound is on resets happening, not on the exact size reached.
    largest, resets, rounds, size = 0, 0, 0, 0
    try:
        while rounds < 300 or (resets < 2 and rounds < 1500):
            await database.run_write(write, 10)
            rounds += 1
            previous, size = size, os.path.getsize(f"{path}-wal")
            resets += size < previous
            largest = max(largest, size)
            await asyncio.sleep(0)
        async with database.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar() == rounds * 10
    finally:
        await database.close()
    assert resets >= 2, f"the WAL grew to {largest} bytes in {rounds} writes: it was never reset"
    assert largest < 32 * 1024 * 1024, f"the WAL grew to {largest} bytes before it was reset"
