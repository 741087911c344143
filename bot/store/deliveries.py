"""Webhook deliveries: stored before GitHub gets its 2xx, deduplicated on `X-GitHub-Delivery`.

`DeliveryWriter` is the group commit: requests waiting to be stored are written together in one
transaction, so one commit (the expensive part) acknowledges many webhooks at once. The
dispatcher then claims stored rows in order and marks each done or failed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from bot.logs import redact
from bot.store.base import CompressedText, UTCDateTime, metadata, utcnow
from bot.store.delivery_order import Blockers, Slot

if TYPE_CHECKING:
    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection

    from bot.store.db import Database

log = logging.getLogger(__name__)

PENDING, PROCESSING, DONE, FAILED = "pending", "processing", "done", "failed"
STATUSES = (PENDING, PROCESSING, DONE, FAILED)
MAX_ERROR_CHARS = 4000

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(100), nullable=False),
    sa.Column("event", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=True),
    sa.Column("installation_id", sa.BigInteger, nullable=True),
    sa.Column("repository", sa.String(255), nullable=True),
    sa.Column("payload", CompressedText, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=PENDING),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    sa.Column("claimed_at", UTCDateTime, nullable=True),
    #: The dispatcher process (`bot.store.dispatchers`) whose claim this is; NULL for claims made
    #: without registering (`Dispatcher.run_once`) or before revision 0006.
    sa.Column("claimed_by", sa.String(32), nullable=True),
    sa.UniqueConstraint("delivery_id"),
    sa.Index("ix_webhook_deliveries_status_id", "status", "id"),
)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A verified webhook as it arrives (payload is the JSON text GitHub sent)."""

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    payload: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    payload: str
    received_at: datetime
    status: str
    attempts: int
    last_error: str | None
    processed_at: datetime | None
    claimed_at: datetime | None = None
    claimed_by: str | None = None


def _stored(row: sa.Row[Any]) -> StoredDelivery:
    return StoredDelivery(**row._mapping)


#: What storing a delivery did: a new row; a repeat of one whose handlers had failed, queued again
#: (GitHub's "Redeliver" sends the same X-GitHub-Delivery); any other repeat, ignored.
STORED, REQUEUED, DUPLICATE = "stored", "requeued", "duplicate"


def store_new_deliveries(conn: sa.Connection, deliveries: Sequence[NewDelivery]) -> list[str]:
    """Insert what is new; return, per input, STORED, REQUEUED or DUPLICATE.

    Synchronous code, run by `Database.run_write` (pysqlite thread, or asyncpg via run_sync).
    One statement per batch, `INSERT ... VALUES (...), (...) ON CONFLICT (delivery_id) DO
    NOTHING RETURNING delivery_id`, on both databases: the ids it returns are the new ones, and
    an id stored meanwhile by another process is simply not returned. It is sent as driver SQL
    because SQLAlchemy's per-row parameter handling cost more than SQLite's own work (see
    bench/webhook_ingest.py). Repeats of failed deliveries go back to pending in the same
    transaction. Within one call the first occurrence of an id wins. (The intake's writer uses
    `store_sqlite_rows` on SQLite.)
    """
    if not deliveries:
        return []
    first: dict[str, NewDelivery] = {}
    for d in deliveries:
        first.setdefault(d.delivery_id, d)
    dialect = conn.dialect
    sql = _insert_ignoring_repeats_sql(dialect.paramstyle, len(first))
    pack, stamp = _bind_processor(dialect, "payload"), _bind_processor(dialect, "received_at")
    params: list[Any] = []
    for d in first.values():
        params += (d.delivery_id, d.event, d.action, d.installation_id, d.repository, pack(d.payload), stamp(d.received_at))
    new_ids = {row[0] for row in conn.exec_driver_sql(sql, tuple(params))}
    repeats = [i for i in first if i not in new_ids]
    requeued = set()
    if repeats:
        sql = _requeue_failed_sql(dialect.paramstyle, len(repeats))
        requeued = {row[0] for row in conn.exec_driver_sql(sql, tuple(repeats))}
    return _outcomes([d.delivery_id for d in deliveries], new_ids, requeued)


def _outcomes(delivery_ids: list[str], new_ids: set[str], requeued: set[str]) -> list[str]:
    """Per input id, in order: STORED, REQUEUED or DUPLICATE (a second occurrence is a repeat)."""
    outcome: list[str] = []
    for i in delivery_ids:
        outcome.append(STORED if i in new_ids else REQUEUED if i in requeued else DUPLICATE)
        new_ids.discard(i)
        requeued.discard(i)
    return outcome


def sqlite_row(d: NewDelivery) -> tuple[Any, ...]:
    """A delivery as SQLite stores it (payload lz4-compressed, time as text), made when it arrives,
    so the commit has nothing left to convert."""
    return (d.delivery_id, d.event, d.action, d.installation_id, d.repository,
            _SQLITE_PACK(d.payload), _SQLITE_STAMP(d.received_at))


def store_sqlite_rows(raw: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """`store_new_deliveries` on SQLite's own DB-API connection, rows made by `sqlite_row`.

    Run by `Database.run_sqlite_write`, beside the event loop. One INSERT without RETURNING:
    reading RETURNING rows steps the statement once per row, each step releasing and retaking
    the GIL. When every row was new (nearly always) the row count says so; otherwise the new ones
    are those above the highest id read first (the transaction holds the write lock, so nothing
    else was inserted meanwhile), and repeats of failed deliveries go back to pending.
    """
    if not rows:
        return []
    first: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        first.setdefault(row[0], row)
    (before,) = raw.execute(f"SELECT coalesce(max(id), 0) FROM {webhook_deliveries.name}").fetchone()
    sql = _insert_ignoring_repeats_sql("qmark", len(first), returning=False)
    inserted = raw.execute(sql, [value for row in first.values() for value in row]).rowcount
    requeued: set[str] = set()
    if inserted == len(first):
        new_ids = set(first)
    else:
        new_ids = {i for (i,) in raw.execute(f"SELECT delivery_id FROM {webhook_deliveries.name} WHERE id > ?", (before,))}
        if repeats := [i for i in first if i not in new_ids]:
            requeued = {i for (i,) in raw.execute(_requeue_failed_sql("qmark", len(repeats)), repeats)}
    return _outcomes([row[0] for row in rows], new_ids, requeued)


def _placeholders(paramstyle: str, count: int) -> list[str]:
    if paramstyle == "qmark":  # sqlite3
        return ["?"] * count
    if paramstyle == "numeric_dollar":  # asyncpg
        return [f"${n}" for n in range(1, count + 1)]
    raise NotImplementedError(f"no delivery SQL for the {paramstyle!r} parameter style")


@functools.lru_cache(maxsize=64)
def _requeue_failed_sql(paramstyle: str, count: int) -> str:
    """Failed deliveries among `count` ids back to pending, returning their ids (driver SQL)."""
    return (
        f"UPDATE {webhook_deliveries.name} SET status = '{PENDING}', processed_at = NULL "
        f"WHERE status = '{FAILED}' AND delivery_id IN ({', '.join(_placeholders(paramstyle, count))}) "
        "RETURNING delivery_id"
    )


_INSERTED_COLUMNS = ("delivery_id", "event", "action", "installation_id", "repository", "payload", "received_at")


@functools.lru_cache(maxsize=128)
def _insert_ignoring_repeats_sql(paramstyle: str, rows: int, returning: bool = True) -> str:
    """The multi-row INSERT for `rows` deliveries, in the driver's placeholder style."""
    width = len(_INSERTED_COLUMNS)
    placeholders = _placeholders(paramstyle, rows * width)
    values = ", ".join(
        "(" + ", ".join(placeholders[i * width : (i + 1) * width]) + f", '{PENDING}', 0)" for i in range(rows)
    )
    columns = ", ".join((*_INSERTED_COLUMNS, "status", "attempts"))
    return (
        f"INSERT INTO {webhook_deliveries.name} ({columns}) VALUES {values} "
        "ON CONFLICT (delivery_id) DO NOTHING" + (" RETURNING delivery_id" if returning else "")
    )


@functools.lru_cache(maxsize=8)
def _bind_processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    """A value of `column` as its type binds it (payload compression on SQLite, the UTC check of
    `received_at`), without SQLAlchemy's per-row statement machinery."""
    process = webhook_deliveries.c[column].type.bind_processor(dialect)
    return process if process is not None else (lambda value: value)


#: Rows bound the way the table's column types bind them on SQLite (`sqlite_row`).
_SQLITE = sqlite_dialect.dialect()
_SQLITE_PACK, _SQLITE_STAMP = _bind_processor(_SQLITE, "payload"), _bind_processor(_SQLITE, "received_at")


async def insert_deliveries(conn: AsyncConnection, deliveries: Sequence[NewDelivery]) -> list[str]:
    """`store_new_deliveries` on an AsyncConnection (inside the caller's transaction)."""
    return await conn.run_sync(store_new_deliveries, list(deliveries))


#: A delivery waiting for the writer: the delivery, its SQLite row (on SQLite), and the caller's future.
_Waiting: TypeAlias = "tuple[NewDelivery, tuple[Any, ...] | None, asyncio.Future[str]]"


class DeliveryWriter:
    """Group commit: every delivery waiting while a transaction runs goes into the next one.

    `await writer.store(delivery)` returns once the row is committed: STORED, REQUEUED or
    DUPLICATE (see `store_new_deliveries`); a database failure is raised to each waiting caller.
    One background task writes, so the event loop never blocks and commits never contend.
    A commit takes half of what waits (at least `max_batch` rows), so that with many requests
    waiting one commit runs while the loop reads the requests of the next, instead of the loop
    idling through a commit of everyone (bench/webhook_ingest.py).
    """

    def __init__(self, database: Database, *, max_batch: int = 25, on_stored: Callable[[], None] | None = None,
                 gather_rounds: int = 8) -> None:
        self.database = database
        self.max_batch = max_batch
        self.gather_rounds = gather_rounds
        self.on_stored = on_stored
        self._waiting: list[_Waiting] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Batches committed and deliveries written (observability; the bench prints them).
        self.batches = 0
        self.written = 0
        self._last_arrival = float("-inf")

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="delivery-writer")

    async def stop(self) -> None:
        """Write what is waiting, then end the task."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
            if self.batches:
                log.info("delivery writer stopped: %d deliveries stored in %d commits", self.written, self.batches)

    async def store(self, delivery: NewDelivery) -> str:
        if self._stopping:
            raise RuntimeError("the delivery writer is stopping")
        self.start()
        loop = asyncio.get_running_loop()
        self._last_arrival = loop.time()
        future: asyncio.Future[str] = loop.create_future()
        row = sqlite_row(delivery) if self.database.dialect == "sqlite" else None
        self._waiting.append((delivery, row, future))
        self._wakeup.set()
        return await future

    def busy(self, window: float = 0.1) -> bool:
        """Whether webhooks arrived in the last `window` seconds (the dispatcher then gives way)."""
        return asyncio.get_running_loop().time() - self._last_arrival < window

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                # Let the event loop run the requests whose bytes are already here first: they
                # join this commit instead of waiting for the next one. A request takes a few
                # loop turns from its bytes to `store`; eight turns cost microseconds when idle
                # and, under load, make commits about twice as large (bench/webhook_ingest.py).
                for _ in range(self.gather_rounds):
                    if len(self._waiting) >= self.max_batch:
                        break
                    await asyncio.sleep(0)
                take = max(self.max_batch, len(self._waiting) // 2)
                batch = self._waiting[:take]
                del self._waiting[:take]
                await self._write(batch)
            if self._stopping and not self._waiting:
                return

    async def _write(self, batch: list[_Waiting]) -> None:
        """Commit a batch; when it fails for what a row holds, store its rows one by one, so that
        only the row at fault is refused and the others are acknowledged."""
        try:
            outcome = await self._commit(batch)
        except Exception as exc:
            if len(batch) > 1 and not _store_unavailable(exc):
                log.warning("could not store %d webhook deliveries together (%s); storing them one by one",
                            len(batch), describe_store_error(exc))
                await self._write_singly(batch)
                return
            self._fail(batch, exc)
            return
        self._settle(batch, outcome)

    async def _write_singly(self, batch: list[_Waiting]) -> None:
        """Each row in its own transaction; once the store itself fails, the rest fail with it."""
        for i, entry in enumerate(batch):
            try:
                outcome = await self._commit([entry])
            except Exception as exc:
                if _store_unavailable(exc):
                    self._fail(batch[i:], exc)
                    return
                self._fail([entry], exc)
                continue
            self._settle([entry], outcome)

    async def _commit(self, batch: list[_Waiting]) -> list[str]:
        if self.database.dialect == "sqlite":
            return await self.database.run_sqlite_write(store_sqlite_rows, [row for _, row, _ in batch])
        return await self.database.run_write(store_new_deliveries, [d for d, _, _ in batch])

    def _fail(self, batch: list[_Waiting], exc: Exception) -> None:
        """Raise to each waiting caller: DeliveryRefused when the row is at fault (the intake answers
        400: GitHub's repeat would fail too), else the error (503: a redelivery may succeed). The
        log names the error's kind only: SQL parameters hold the payload."""
        summary = describe_store_error(exc)
        if len(batch) == 1 and not _store_unavailable(exc):
            delivery = batch[0][0]
            log.error("webhook delivery %r refused by the store (%s)", delivery.delivery_id[:100], summary)
            error: Exception = DeliveryRefused(store_error_reason(exc))
        else:
            log.error("could not store %d webhook deliveries (%s)", len(batch), summary)
            error = exc
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    def _settle(self, batch: list[_Waiting], outcome: list[str]) -> None:
        self.batches += 1
        self.written += outcome.count(STORED)
        for (_, _, future), result in zip(batch, outcome, strict=False):
            if not future.done():
                future.set_result(result)
        if self.on_stored is not None and any(result != DUPLICATE for result in outcome):
            self.on_stored()


class DeliveryRefused(Exception):
    """The store refused this delivery for what it holds (a value too long, a number out of
    range), when stored alone: storing it again would fail the same way."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


#: Errors that say the database cannot be used now, whatever the rows: a batch failing so is not
#: retried row by row (each row would wait for the same failure).
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sqlite3.OperationalError,
                sqlite3.InterfaceError, OSError, asyncio.TimeoutError)

#: SQLSTATE classes (PostgreSQL) and what they say about a row, for the refusal's message.
_SQLSTATE_REASONS = {
    "22001": "a value is longer than its column",
    "22003": "a number is out of range",
    "22021": "a text value holds a character the database cannot store",
    "22P05": "a text value holds a character the database cannot store",
    "23": "a value breaks a constraint",
    "22": "a value the database cannot store",
}


def _store_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _UNAVAILABLE) or isinstance(getattr(exc, "orig", None), _UNAVAILABLE)


def _error_code(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None) or exc
    for source in (orig, getattr(orig, "__cause__", None)):
        code = getattr(source, "sqlstate", None) or getattr(source, "sqlite_errorname", None)
        if code:
            return str(code)
    return None


def describe_store_error(exc: BaseException) -> str:
    """A database error as it may be logged: its kinds and code, never its text (SQLAlchemy's
    carries the statement's parameters, asyncpg's may quote a value, and values are payloads)."""
    orig = getattr(exc, "orig", None)
    kinds = [type(exc).__name__] + ([type(orig).__name__] if orig is not None and orig is not exc else [])
    code = _error_code(exc)
    return " / ".join(kinds) + (f", code {code}" if code else "")


def store_error_reason(exc: BaseException) -> str:
    """What a refused row holds that the store would not take, for the refusal's answer."""
    causes: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while causes[-1] is not None and id(causes[-1]) not in seen and len(causes) < 8:
        seen.add(id(causes[-1]))
        last: Any = causes[-1]
        causes.append(getattr(last, "orig", None) or last.__cause__ or last.__context__)
    if any(isinstance(cause, OverflowError) for cause in causes):  # sqlite3's binding, asyncpg's encoder
        return "a number is out of range"
    code = _error_code(exc)
    if code and code.isalnum():
        reason = _SQLSTATE_REASONS.get(code) or _SQLSTATE_REASONS.get(code[:2])
        if reason:
            return f"{reason} (SQLSTATE {code})"
    return f"the database did not accept it ({describe_store_error(exc)})"


# -- the dispatcher's side -----------------------------------------------------------------

#: Arbitrary constant key: on PostgreSQL replicas claim one at a time (see `claim_pending`).
_PG_CLAIM_LOCK = 0x466C617266  # "Flarf"
#: Pending rows a claim reads at a time, and at most per claim (rows held behind other owners'
#: claims are passed over; past the budget they wait for the next claim).
CLAIM_CHUNK = 100
CLAIM_SCAN_BUDGET = 2000


async def claim_pending(database: Database, limit: int, owner: str | None = None) -> list[StoredDelivery]:
    """Mark up to `limit` of the oldest pending deliveries that may run now as processing by
    `owner` (one attempt more) and return them, oldest first.

    A pending delivery may not run yet while one it must follow (`delivery_order`: an older one
    of its repository, or an installation change of its installation) is claimed by another
    owner, live or dead and awaiting takeover, or is itself left pending: so no replica overtakes
    another's claims within a repository, and a delivery taken back from a dead one runs before
    the later ones of its repository. `owner=None` claims without a registration
    (`Dispatcher.run_once`). On PostgreSQL the transaction holds an advisory lock, so replicas
    claim one at a time and each sees the others' claims (SQLite's write lock does the same).
    It runs like the intake's group commit (`run_write`: one hop to the store's thread on SQLite).
    """
    rows = await database.run_write(_claim, limit, owner)
    return sorted((_stored(r) for r in rows), key=lambda d: d.id)


def _claim(conn: sa.Connection, limit: int, owner: str | None) -> list[sa.Row[Any]]:
    t = webhook_deliveries
    if limit <= 0:
        return []
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CLAIM_LOCK})
    ordering = (t.c.id, t.c.event, t.c.installation_id, t.c.repository)
    others = conn.execute(sa.select(*ordering).where(t.c.status == PROCESSING, t.c.claimed_by.is_distinct_from(owner)))
    blockers = Blockers([Slot(*row) for row in others])
    chosen: list[int] = []
    after, budget = 0, CLAIM_SCAN_BUDGET
    while len(chosen) < limit and budget > 0:
        pending = sa.select(*ordering).where(t.c.status == PENDING, t.c.id > after).order_by(t.c.id).limit(CLAIM_CHUNK)
        rows = [Slot(*row) for row in conn.execute(pending)]
        for slot in rows:
            if blockers.holds(slot):
                blockers.add(slot)  # the ones after it wait for it in turn
            else:
                chosen.append(slot.id)
                if len(chosen) == limit:
                    break
        if len(rows) < CLAIM_CHUNK:
            break
        after, budget = rows[-1].id, budget - len(rows)
    if not chosen:
        return []
    statement = (
        sa.update(t)
        .where(t.c.id.in_(chosen), t.c.status == PENDING)
        .values(status=PROCESSING, attempts=t.c.attempts + 1, claimed_at=utcnow(), claimed_by=owner)
        .returning(*t.c)
    )
    return list(conn.execute(statement).all())


async def record_outcomes(database: Database, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
    """Mark deliveries done, or failed with their (redacted, truncated) error, in one transaction."""
    if done or failed:
        await database.run_write(_record, list(done), [(pk, redact(error)[:MAX_ERROR_CHARS]) for pk, error in failed])


def _record(conn: sa.Connection, done: list[int], failed: list[tuple[int, str]]) -> None:
    t = webhook_deliveries
    now = utcnow()
    if done:
        conn.execute(sa.update(t).where(t.c.id.in_(done)).values(status=DONE, last_error=None, processed_at=now))
    if failed:
        conn.execute(
            sa.update(t).where(t.c.id == sa.bindparam("pk")).values(
                status=FAILED, last_error=sa.bindparam("error"), processed_at=now
            ),
            [{"pk": pk, "error": error} for pk, error in failed],
        )


async def release(database: Database, ids: Sequence[int], owner: str | None = None) -> None:
    """Give back deliveries `owner` claimed and did not run (the dispatcher is stopping); a claim
    that meanwhile passed to another owner is left alone."""
    if ids:
        await database.run_write(_release, list(ids), owner)


def _release(conn: sa.Connection, ids: list[int], owner: str | None) -> None:
    t = webhook_deliveries
    conn.execute(
        sa.update(t)
        .where(t.c.id.in_(ids), t.c.status == PROCESSING, t.c.claimed_by.is_not_distinct_from(owner))
        .values(status=PENDING, claimed_by=None)
    )


#: How long handled deliveries are kept. Done ones must outlive GitHub's redelivery window (3 days
#: on github.com, 7 on GHES) so that a repeat is still recognised; failed ones stay longer, to be
#: looked into and redelivered.
KEEP_DONE = timedelta(days=14)
KEEP_FAILED = timedelta(days=30)
PRUNE_CHUNK = 1000


async def prune(database: Database, now: datetime | None = None) -> int:
    """Delete deliveries handled longer ago than KEEP_DONE / KEEP_FAILED; returns how many.

    In chunks of PRUNE_CHUNK rows, one transaction each, so the write lock is never held for long
    and the intake's commits slip in between.
    """
    now = now or utcnow()
    t = webhook_deliveries
    expired = sa.or_(
        sa.and_(t.c.status == DONE, t.c.processed_at < now - KEEP_DONE),
        sa.and_(t.c.status == FAILED, t.c.processed_at < now - KEEP_FAILED),
    )
    chunk = sa.select(t.c.id).where(expired).limit(PRUNE_CHUNK).scalar_subquery()
    deleted = 0
    while True:
        count = await database.run_write(_delete, chunk)
        deleted += count
        if count < PRUNE_CHUNK:
            return deleted


def _delete(conn: sa.Connection, ids: sa.ScalarSelect[Any]) -> int:
    t = webhook_deliveries
    return conn.execute(sa.delete(t).where(t.c.id.in_(ids))).rowcount or 0


async def requeue_interrupted(database: Database, claimed_before: datetime | None = None) -> int:
    """Deliveries left `processing` go back to `pending`, whoever claimed them.

    `claimed_before=None` takes back every claim: right for SQLite, where one process owns the
    file, so at start-up any claim is a dead one. Dispatchers take back the claims of dead
    owners through their registry (`bot.store.dispatchers.beat`). Handlers are idempotent, so
    running a delivery again has the effect of running it once.
    """
    t = webhook_deliveries
    condition = t.c.status == PROCESSING
    if claimed_before is not None:
        condition &= sa.or_(t.c.claimed_at.is_(None), t.c.claimed_at < claimed_before)
    async with database.begin() as conn:
        result = await conn.execute(sa.update(t).where(condition).values(status=PENDING, claimed_by=None))
    return result.rowcount or 0


async def get_delivery(database: Database, delivery_id: str) -> StoredDelivery | None:
    t = webhook_deliveries
    async with database.connect() as conn:
        row = (await conn.execute(sa.select(t).where(t.c.delivery_id == delivery_id))).first()
    return _stored(row) if row is not None else None


async def count_by_status(database: Database) -> dict[str, int]:
    t = webhook_deliveries
    async with database.connect() as conn:
        rows = (await conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: n for status, n in rows})
    return counts


class DeliveryStore:
    """The webhook deliveries table, the one way in from outside the store: the intake's
    group-commit writes (`store`; on SQLite through the raw-connection fast path above), the
    dispatcher's claims, outcomes and releases, and the counts the monitoring reads."""

    def __init__(self, database: Database, *, on_stored: Callable[[], None] | None = None) -> None:
        self.database = database
        #: The group-commit writer behind `store` (started and stopped with this store).
        self.writer = DeliveryWriter(database, on_stored=on_stored)

    def start(self) -> None:
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()

    async def store(self, delivery: NewDelivery) -> str:
        """STORED, REQUEUED or DUPLICATE once committed (see `store_new_deliveries`)."""
        return await self.writer.store(delivery)

    def busy(self, window: float = 0.1) -> bool:
        """Whether webhooks arrived in the last `window` seconds."""
        return self.writer.busy(window)

    async def insert(self, items: Sequence[NewDelivery]) -> list[str]:
        """Store `items` in one transaction, outside the group commit (tools and tests)."""
        async with self.database.begin() as conn:
            return await insert_deliveries(conn, items)

    async def claim_pending(self, limit: int, owner: str | None = None) -> list[StoredDelivery]:
        return await claim_pending(self.database, limit, owner)

    async def record_outcomes(self, done: Sequence[int], failed: Sequence[tuple[int, str]]) -> None:
        await record_outcomes(self.database, done, failed)

    async def release(self, ids: Sequence[int], owner: str | None = None) -> None:
        await release(self.database, ids, owner)

    async def prune(self, now: datetime | None = None) -> int:
        return await prune(self.database, now)

    async def requeue_interrupted(self, claimed_before: datetime | None = None) -> int:
        return await requeue_interrupted(self.database, claimed_before)

    async def get(self, delivery_id: str) -> StoredDelivery | None:
        return await get_delivery(self.database, delivery_id)

    async def count_by_status(self) -> dict[str, int]:
        return await count_by_status(self.database)
