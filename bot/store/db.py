"""The async database: one engine for SQLite (default, WAL) or PostgreSQL, and schema migrations.

The same SQLAlchemy Core code runs on both; only the connection set-up differs. SQLite gets the
pragmas that make a single file safe and fast under concurrent async use (WAL, synchronous=NORMAL
which survives a process crash, a busy timeout so writers queue instead of failing, foreign keys).
Every engine hides statement parameters from its errors (`hide_parameters`): errors get logged,
and the parameters of a webhook's INSERT are its payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.settings import normalize_database_url

if TYPE_CHECKING:
    import sqlite3

    from alembic.config import Config

    from bot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Milliseconds a SQLite writer waits for the lock before giving up (waits happen off the event loop).
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: WAL bytes kept after a reset; also the size beyond which a checkpoint waits for writers to pause.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: A WAL reset copies at most about this many frames (pages) with writers paused (see _restart).
RESTART_FRAMES = 512
RESTART_ROUNDS = 4
#: Arbitrary constant key: replicas starting together on PostgreSQL migrate one at a time.
_PG_MIGRATION_LOCK = 0x466C617265  # "Flare"

_NOT_TABLE_MODULES = {"base", "db", "migrations"}


def load_table_modules() -> None:
    """Import every table module in `bot.store` so `metadata` knows every table of every area."""
    import bot.store

    for module in pkgutil.iter_modules(bot.store.__path__):
        if module.name not in _NOT_TABLE_MODULES and not module.name.startswith("_"):
            importlib.import_module(f"bot.store.{module.name}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL, as Rails, PocketBase and Litestream run SQLite in WAL mode: a commit survives a
        # crash of this process (tests/engine kill it mid-step), not a power cut or an OS crash.
        # FULL would cover those for ~15-20% of webhook ingest throughput (bench/webhook_ingest.py);
        # deployments that need it run on PostgreSQL, which is durable by default.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # No checkpoint inside a commit (it fsyncs, and would stall whoever committed, e.g. a
        # webhook ack); `Database` checkpoints in the background instead.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    finally:
        cursor.close()


class Database:
    """An async engine plus the few operations every area needs (transactions, migrations, close)."""

    def __init__(self, url: str, *, echo: bool = False, checkpoint_interval: float = 1.0):
        """`checkpoint_interval`: on SQLite, the least seconds between two background WAL
        checkpoints (see _Checkpointer)."""
        self.url = normalize_database_url(url)
        self.engine: AsyncEngine = self._create_engine(self.url, echo)
        # SQLite has one writer at a time; a second one polls with sleeps of up to 100 ms
        # (its busy handler). Queueing this process's write transactions on a FIFO lock instead
        # keeps that wait out of the webhook acks' tail latency. PostgreSQL needs no such thing.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self._lock_owner: asyncio.Task[Any] | None = None
        self._sync_engine: sa.Engine | None = None
        self._sync_connection: sa.Connection | None = None
        self._checkpointer = (_Checkpointer(self.url, self.write_lock, checkpoint_interval)
                              if self.dialect == "sqlite" else None)
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.async_database_url)

    @staticmethod
    def _create_engine(url: str, echo: bool) -> AsyncEngine:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(
                url, echo=echo, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        return create_async_engine(url, echo=echo, hide_parameters=True, pool_size=10, max_overflow=10)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`: for the rare statement that must differ (upserts)."""
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """`async with db.begin() as conn:` a transaction committed on success, rolled back on error.

        On SQLite these transactions take turns in this process (see `write_lock`); do not open
        one inside another.
        """
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        task = asyncio.current_task()
        if self._write_lock.locked() and self._lock_owner is task:
            raise RuntimeError("a SQLite write transaction was opened inside another one: it would wait forever")
        async with self._write_lock:
            self._lock_owner = task
            try:
                async with self.engine.begin() as conn:
                    yield conn
            finally:
                self._lock_owner = None
        if self._checkpointer is not None:
            self._checkpointer.after_write()

    def write_lock(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around a write transaction made on a connection of one's own (SQLite only)."""
        return self._write_lock if self._write_lock is not None else contextlib.nullcontext()

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(connection, *args)` (synchronous SQLAlchemy Core code) in one write transaction.

        For hot paths. On PostgreSQL it runs on the async engine through `run_sync`. On SQLite the
        whole transaction runs in the store's own thread on a plain pysqlite connection: one
        thread hop per transaction instead of one per cursor call (aiosqlite), which is what
        makes a group commit cheap. Either way the event loop never blocks.
        """
        if self.dialect != "sqlite":
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        return await self._in_store_thread(self._run_sync_transaction, fn, args)

    async def run_sqlite_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(dbapi_connection, *args)` in one `BEGIN IMMEDIATE` transaction (SQLite only).

        The webhook intake's hot path: a plain sqlite3 connection in the store's thread, with
        nothing of SQLAlchemy's per-statement Python around it. The thread runs beside the event
        loop, and every Python line it runs competes with the loop for the GIL; a few statements
        each releasing it for all their work is what lets commits overlap the loop's work.
        """
        return await self._in_store_thread(self._run_dbapi_transaction, fn, args)

    async def _in_store_thread(self, transaction: Callable[..., T], fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """One write transaction in the store's thread, under the write lock; then a checkpoint
        is considered."""
        async with self.write_lock():
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flareship-sqlite")
            result = await asyncio.get_running_loop().run_in_executor(self._executor, transaction, fn, args)
        if self._checkpointer is not None:
            self._checkpointer.after_write()
        return result

    def _run_dbapi_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        raw: Any = self._sync_connection_in_thread().connection.driver_connection
        raw.execute("BEGIN IMMEDIATE")
        try:
            result = fn(raw, *args)
        except BaseException:
            raw.rollback()
            raise
        raw.commit()
        return result

    def _sync_connection_in_thread(self) -> sa.Connection:
        """The store thread's one SQLAlchemy connection (pragmas applied), opened on first use."""
        if self._sync_engine is None:
            url = sa.engine.make_url(self.url).set(drivername="sqlite+pysqlite")
            self._sync_engine = sa.create_engine(
                url, hide_parameters=True,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            )
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
        if self._sync_connection is None or self._sync_connection.closed:
            self._sync_connection = self._sync_engine.connect()  # kept: no pool round trip per batch
        return self._sync_connection

    def _run_sync_transaction(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        connection = self._sync_connection_in_thread()
        try:
            with connection.begin():
                return fn(connection, *args)
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                self._sync_connection = None
            raise

    def connect(self) -> AsyncConnection:
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
        if self._checkpointer is not None:
            await self._checkpointer.close()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            sync_engine, self._sync_engine = self._sync_engine, None
            sync_connection, self._sync_connection = self._sync_connection, None

            def dispose() -> None:
                if sync_connection is not None:
                    sync_connection.close()
                if sync_engine is not None:
                    sync_engine.dispose()

            await asyncio.get_running_loop().run_in_executor(executor, dispose)
            executor.shutdown(wait=False)
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({sa.engine.make_url(self.url).render_as_string(hide_password=True)!r})"


class _Checkpointer:
    """Copies the SQLite WAL back into the database file off the commit path.

    Automatic checkpoints are off on every connection (they would run inside some commit and
    fsync there); instead, at most once per `interval` after a write, a PASSIVE checkpoint runs
    on its own connection in a worker thread. PASSIVE never blocks writers or readers. Under
    writes that never pause, the WAL can only restart from its beginning if writers wait for
    a moment, so past WAL_SIZE_LIMIT a RESTART checkpoint runs holding the write lock, after
    PASSIVE rounds have copied all but the last few frames (`_restart`).
    """

    def __init__(self, url: str, write_lock: Callable[[], contextlib.AbstractAsyncContextManager[Any]],
                 interval: float = 1.0) -> None:
        database = sa.engine.make_url(url).database or ""
        self.path = None if database in ("", ":memory:") or database.startswith("file:") else database
        self.write_lock = write_lock
        self.interval = interval
        self._last = 0.0
        self._running: asyncio.Future[Any] | None = None
        self._connection: sqlite3.Connection | None = None
        self._wal_too_big = False

    def after_write(self) -> None:
        if self.path is None or (self._running is not None and not self._running.done()):
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last < self.interval:
            return
        self._last = loop.time()
        if self._wal_too_big:
            self._running = asyncio.ensure_future(self._restart())
        else:
            self._running = loop.run_in_executor(None, self._checkpoint, "PASSIVE")
        self._running.add_done_callback(self._report)

    async def _restart(self) -> None:
        """Reset the WAL with writers paused for as short a time as possible.

        Copying is faster than writing, so each PASSIVE round leaves less behind: rounds run
        (writers still going) until one finds fewer than RESTART_FRAMES new frames, and only
        that remainder is copied with the write lock held. One PASSIVE then RESTART would hold
        the lock while copying a whole second of writes: about 50 ms of stalled acks.
        """
        loop = asyncio.get_running_loop()
        frames = await loop.run_in_executor(None, self._checkpoint, "PASSIVE")
        for _ in range(RESTART_ROUNDS):
            previous, frames = frames, await loop.run_in_executor(None, self._checkpoint, "PASSIVE")
            if frames - previous < RESTART_FRAMES:
                break
        async with self.write_lock():
            await loop.run_in_executor(None, self._checkpoint, "RESTART")

    @staticmethod
    def _report(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("SQLite checkpoint failed: %s", future.exception())

    def _checkpoint(self, mode: str) -> int:
        """Run one checkpoint; return the frames the WAL holds (all copied, unless busy)."""
        import sqlite3

        assert self.path is not None  # after_write and close only run a checkpoint on a file
        if self._connection is None:
            self._connection = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
        frames: int
        _busy, frames, _copied = self._connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        wal = self.path + "-wal"
        self._wal_too_big = os.path.exists(wal) and os.path.getsize(wal) > WAL_SIZE_LIMIT
        return frames

    async def close(self) -> None:
        path = self.path
        if path is None:
            return
        if self._running is not None:
            await asyncio.wait([self._running])
        loop = asyncio.get_running_loop()

        def finish() -> None:
            try:
                if os.path.exists(path):
                    self._checkpoint("TRUNCATE")
            finally:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        try:
            await loop.run_in_executor(None, finish)
        except Exception as exc:  # a busy database at shutdown: the next start checkpoints
            log.warning("final SQLite checkpoint failed: %s", exc)


def alembic_config(connection: sa.Connection | None = None) -> Config:
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


__all__ = ["AsyncConnection", "Database", "alembic_config", "load_table_modules"]
