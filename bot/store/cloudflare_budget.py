"""The Cloudflare request budget shared by every replica on PostgreSQL (`bot.cloudflare.budget`).

Cloudflare allows 1,200 requests per 5 minutes per token, counted by Cloudflare for all callers
together; replicas that each kept their own window could send that many times the limit. So on
PostgreSQL the window lives in one table: a row per token hash and time slice (a twentieth of the
window) holding how many requests were sent in that slice. A request takes a slot in one
transaction, under a transaction-level advisory lock on the token's hash, so concurrent takers of
one token queue while those of other tokens do not:
https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADVISORY-LOCKS

A slice counts for a whole window after it *ends*, so every request is counted for at least one
full window: any window of that length holds at most `limit` requests (the price is up to one
slice of unused room). Times are the database's clock (`clock_timestamp()`), so replicas on
hosts whose clocks differ still share one window. Only the token's SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from bot.store.base import metadata

if TYPE_CHECKING:
    from bot.store.db import Database

#: Slices per window: the window's resolution (and the most room left unused, 1/SLICES of it).
SLICES = 20
#: Keeps this table's advisory locks apart from the migration lock (bot/store/db.py).
_LOCK_NAMESPACE = "flareship:cloudflare-budget:"

cloudflare_budget = sa.Table(
    "cloudflare_budget",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    #: The slice's start, in milliseconds since the epoch (the database's clock).
    sa.Column("slice_start", sa.BigInteger, primary_key=True),
    sa.Column("requests", sa.Integer, nullable=False),
)


def slice_ms(window: float) -> int:
    return max(1, int(window * 1000) // SLICES)


def wait_for_slot(slices: list[tuple[int, int]], now_ms: int, limit: int, window_ms: int, width_ms: int) -> float:
    """Seconds until one more request fits (0 = now), given the counted (slice_start, requests)
    oldest first. Pure, so the arithmetic is tested without a database."""
    total = sum(count for _, count in slices)
    if total < limit:
        return 0.0
    freed = 0
    for start, count in slices:
        freed += count
        if total - freed < limit:
            return max(0.0, (start + width_ms + window_ms - now_ms) / 1000)
    return window_ms / 1000  # unreachable with limit >= 1; a full window is the safe answer


def _take(conn: sa.Connection, token_hash: str, limit: int, window: float) -> tuple[float, int]:
    lock_key = int.from_bytes(hashlib.sha256((_LOCK_NAMESPACE + token_hash).encode()).digest()[:8], "big", signed=True)
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
    now_ms = int(conn.execute(sa.text("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)")).scalar_one())
    window_ms, width = int(window * 1000), slice_ms(window)
    table = cloudflare_budget
    # Slices that ended a whole window ago no longer count.
    conn.execute(table.delete().where(table.c.token_hash == token_hash,
                                      table.c.slice_start + width + window_ms <= now_ms))
    rows = conn.execute(sa.select(table.c.slice_start, table.c.requests)
                        .where(table.c.token_hash == token_hash).order_by(table.c.slice_start)).all()
    counted = sum(r.requests for r in rows)
    wait = wait_for_slot([(r.slice_start, r.requests) for r in rows], now_ms, limit, window_ms, width)
    if wait > 0:
        return wait, counted
    start = math.floor(now_ms / width) * width
    statement = insert(table).values(token_hash=token_hash, slice_start=start, requests=1)
    conn.execute(statement.on_conflict_do_update(
        index_elements=[table.c.token_hash, table.c.slice_start], set_={"requests": table.c.requests + 1}))
    return 0.0, counted + 1


def _in_window(conn: sa.Connection, token_hash: str, window: float) -> int:
    now_ms = conn.execute(sa.text("SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)")).scalar_one()
    table = cloudflare_budget
    counted = sa.select(sa.func.coalesce(sa.func.sum(table.c.requests), 0)).where(
        table.c.token_hash == token_hash,
        table.c.slice_start + slice_ms(window) + int(window * 1000) > int(now_ms))
    return int(conn.execute(counted).scalar_one())


class SharedWindow:
    """The shared window of one token (its SHA-256 hex digest) on a PostgreSQL database."""

    def __init__(self, database: Database, token_hash: str):
        if database.dialect != "postgresql":
            raise ValueError("the shared Cloudflare budget needs PostgreSQL (SQLite keeps the in-process one)")
        self.database = database
        self.token_hash = token_hash

    async def take(self, limit: int, window: float) -> tuple[float, int]:
        """Take one slot (wait 0) or say how many seconds until one frees (taking nothing); with
        the requests every replica has in the window after this one."""
        return await self.database.run_write(_take, self.token_hash, limit, window)

    async def in_window(self, window: float) -> int:
        """Requests every replica sent with this token in the current window."""
        async with self.database.connect() as conn:
            return await conn.run_sync(_in_window, self.token_hash, window)
