"""The dispatcher registry: each webhook dispatcher process registers itself and keeps a heartbeat,
so that the claims of one that died are taken back seconds after it stopped beating, instead of
once a lease as long as the slowest handler has run out.

A claim in `webhook_deliveries` names its owner (`claimed_by`). Every live dispatcher sweeps with
its own heartbeat (`beat`): owners whose heartbeat is older than a timeout are struck off, and
every claim whose owner is no longer registered goes back to pending, in the same transaction.
On PostgreSQL heartbeats are stamped and judged by the database's clock, so replicas on hosts
whose clocks differ still agree on who is late; on SQLite (one host) by this process's.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bot.store.base import UTCDateTime, metadata, utcnow
from bot.store.deliveries import PENDING, PROCESSING, webhook_deliveries

if TYPE_CHECKING:
    from bot.store.db import Database

dispatchers = sa.Table(
    "dispatchers",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True, slots=True)
class Registration:
    """One registered dispatcher process, as the registry holds it."""

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class Beat:
    """What one heartbeat found: whether this process was still registered (a sweeper strikes off
    a process that stalled past the timeout), who was struck off, how many claims were taken back."""

    registered: bool
    dead: list[str]
    taken_back: int


def new_owner_id() -> str:
    return uuid.uuid4().hex


def _now(conn: sa.Connection) -> sa.ColumnElement[datetime]:
    """The time a heartbeat is stamped with: the database's clock on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        return sa.func.clock_timestamp(type_=UTCDateTime())
    return sa.literal(utcnow(), UTCDateTime())


def _ago(conn: sa.Connection, seconds: float) -> sa.ColumnElement[datetime]:
    if conn.dialect.name == "postgresql":
        return sa.func.clock_timestamp() - sa.literal(timedelta(seconds=seconds), sa.Interval())
    return sa.literal(utcnow() - timedelta(seconds=seconds), UTCDateTime())


async def register(database: Database, owner: str) -> None:
    """Enter this process in the registry (before it claims anything under `owner`)."""
    await database.run_write(_register, owner, socket.gethostname()[:255], os.getpid())


def _register(conn: sa.Connection, owner: str, host: str, pid: int) -> None:
    now = _now(conn)
    conn.execute(sa.insert(dispatchers).values(id=owner, host=host, pid=pid, started_at=now, heartbeat_at=now))


async def beat(database: Database, owner: str, *, stale_after: float, legacy_lease: float | None) -> Beat:
    """Stamp `owner`'s heartbeat, strike off owners silent for over `stale_after` seconds and
    take back every claim whose owner is not registered; one transaction.

    `stale_after=0` strikes off every other owner (SQLite at start-up: one process owns the file).
    Claims naming no owner (`Dispatcher.run_once`, or made before revision 0006) are taken back
    once older than `legacy_lease` seconds; all of them when it is None.
    """
    return await database.run_write(_beat, owner, stale_after, legacy_lease)


def _beat(conn: sa.Connection, owner: str, stale_after: float, legacy_lease: float | None) -> Beat:
    d, t = dispatchers, webhook_deliveries
    registered = conn.execute(sa.update(d).where(d.c.id == owner).values(heartbeat_at=_now(conn))).rowcount == 1
    stale: sa.ColumnElement[bool] = d.c.heartbeat_at < _ago(conn, stale_after) if stale_after > 0 else sa.true()
    dead = [row[0] for row in conn.execute(sa.delete(d).where(d.c.id != owner, stale).returning(d.c.id))]
    orphaned = sa.and_(t.c.claimed_by.is_not(None), t.c.claimed_by.not_in(sa.select(d.c.id)))
    anonymous: sa.ColumnElement[bool]
    if legacy_lease is None:
        anonymous = t.c.claimed_by.is_(None)
    else:
        cutoff = utcnow() - timedelta(seconds=legacy_lease)  # claimed_at is stamped by this host's clock
        anonymous = sa.and_(t.c.claimed_by.is_(None), sa.or_(t.c.claimed_at.is_(None), t.c.claimed_at < cutoff))
    taken = conn.execute(
        sa.update(t).where(t.c.status == PROCESSING, sa.or_(orphaned, anonymous)).values(status=PENDING, claimed_by=None)
    ).rowcount or 0
    return Beat(registered, dead, taken)


async def deregister(database: Database, owner: str) -> int:
    """Leave the registry, giving back whatever `owner` still claims; returns how many claims."""
    return await database.run_write(_deregister, owner)


def _deregister(conn: sa.Connection, owner: str) -> int:
    t = webhook_deliveries
    released = conn.execute(
        sa.update(t).where(t.c.status == PROCESSING, t.c.claimed_by == owner).values(status=PENDING, claimed_by=None)
    ).rowcount or 0
    conn.execute(sa.delete(dispatchers).where(dispatchers.c.id == owner))
    return released


async def registered(database: Database) -> list[Registration]:
    """Every registered dispatcher, oldest first (operators and tests look here)."""
    async with database.connect() as conn:
        rows = (await conn.execute(sa.select(dispatchers).order_by(dispatchers.c.started_at))).all()
    return [Registration(**row._mapping) for row in rows]


class DispatcherRegistry:
    """The dispatchers table: which processes dispatch webhooks, and their heartbeats."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def register(self, owner: str) -> None:
        await register(self.database, owner)

    async def beat(self, owner: str, *, stale_after: float, legacy_lease: float | None) -> Beat:
        return await beat(self.database, owner, stale_after=stale_after, legacy_lease=legacy_lease)

    async def deregister(self, owner: str) -> int:
        return await deregister(self.database, owner)

    async def registered(self) -> list[Registration]:
        return await registered(self.database)
