"""Alembic environment: runs on the connection `Database.migrate` hands over (both dialects).

Run from the command line (`alembic -c ...`) it builds an engine from `sqlalchemy.url` instead.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from alembic import context

from bot.store.base import metadata
from bot.store.db import load_table_modules

load_table_modules()
config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    from bot.store.db import Database

    database = Database(config.get_main_option("sqlalchemy.url"))  # type: ignore[arg-type]  # alembic -c sets it
    try:
        async with database.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await database.close()


if context.is_offline_mode():
    _run_offline()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
    else:
        asyncio.run(_run_with_own_engine())
