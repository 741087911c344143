"""The async database: one engine for SQLite (default, WAL) or PostgreSQL, and schema migrations.

The same SQLAlchemy Core code runs on both; only the connection set-up differs. SQLite gets the
pragmas that make a single file safe and fast under concurrent async use (WAL, synchronous=NORMAL
which survives a process crash, a busy timeout so writers queue instead of failing, foreign keys).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.settings import normalize_database_url

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Milliseconds a SQLite writer waits for the lock before giving up (waits happen off the event loop).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Arbitrary constant key: replicas starting together on PostgreSQL migrate one at a time.
_PG_MIGRATION_LOCK = 0x466C617265  # "Flare"

_NOT_TABLE_MODULES = {"base", "db", "migrations"}


def load_table_modules() -> None:
    """Import every table module in `bot.store` so `metadata` knows every table of every area."""
    import bot.store

    for module in pkgutil.iter_modules(bot.store.__path__):
        if module.name not in _NOT_TABLE_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"bot.store.{module.name}")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


class Database:
    """An async engine plus the few operations every area needs (transactions, migrations, close)."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = normalize_database_url(url)
        self.engine: AsyncEngine = self._create_engine(self.url, echo)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Database":
        return cls(settings.async_database_url)

    @staticmethod
    def _create_engine(url: str, echo: bool) -> AsyncEngine:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(
                url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        return create_async_engine(url, echo=echo, pool_size=10, max_overflow=10)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`: for the rare statement that must differ (upserts)."""
        return self.engine.dialect.name

    def begin(self):
        """`async with db.begin() as conn:` a transaction committed on success, rolled back on error."""
        return self.engine.begin()

    def connect(self):
        """`async with db.connect() as conn:` a connection; call `await conn.commit()` yourself."""
        return self.engine.connect()

    async def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision` with alembic, on the engine's own connection."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            await conn.run_sync(_upgrade, revision)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def close(self) -> None:
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({sa.engine.make_url(self.url).render_as_string(hide_password=True)!r})"


def alembic_config(connection: sa.Connection | None = None):
    """An alembic Config pointing at the packaged migrations (no alembic.ini needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


__all__ = ["Database", "AsyncConnection", "load_table_modules", "alembic_config"]
