"""`flareship token create|list|revoke`: manage REST API tokens from the operator's shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta

from bot.api_auth import ScopeError
from bot.settings import load_settings


async def _with_store(action):
    from bot.store.api_tokens import ApiTokenStore
    from bot.store.db import Database

    database = Database.from_settings(load_settings())
    try:
        await database.migrate()
        return await action(ApiTokenStore(database))
    finally:
        await database.close()


def _iso(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def _create(args: argparse.Namespace) -> int:
    if args.expires_in is not None and args.expires_in <= 0:
        print("--expires-in must be a positive number of days", file=sys.stderr)
        return 2

    async def action(store):
        return await store.create(
            name=args.name, scopes=args.scope,
            expires_in=timedelta(days=args.expires_in) if args.expires_in else None,
        )

    try:
        record, plaintext = asyncio.run(_with_store(action))
    except (ScopeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(plaintext)
    print(
        f"created {record.id} ({record.name}) scopes={','.join(record.scopes)} expires={_iso(record.expires_at)}"
        " - the token is shown only once",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    tokens = asyncio.run(_with_store(lambda store: store.list()))
    print(f"{'ID':<22} {'NAME':<24} {'SCOPES':<32} {'CREATED':<21} {'EXPIRES':<21} {'LAST USED':<21} STATE")
    for t in tokens:
        state = "revoked" if t.revoked_at else "active"
        print(f"{t.id:<22} {t.name[:24]:<24} {','.join(t.scopes)[:32]:<32} {_iso(t.created_at):<21} "
              f"{_iso(t.expires_at):<21} {_iso(t.last_used_at):<21} {state}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    revoked = asyncio.run(_with_store(lambda store: store.revoke(args.id)))
    if not revoked:
        print(f"no active token {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def add_parser(commands) -> None:
    """Register `token` and its subcommands on the CLI's subparsers."""
    token = commands.add_parser("token", help="create, list and revoke REST API tokens")
    sub = token.add_subparsers(dest="token_command", required=True)
    create = sub.add_parser("create", help="create a token (printed once)")
    create.add_argument("--scope", action="append", required=True,
                        help="read, deploy:<env> or admin (repeat for several)")
    create.add_argument("--name", required=True, help="who or what uses the token")
    create.add_argument("--expires-in", type=int, default=None, metavar="DAYS", help="expire after DAYS days")
    create.set_defaults(func=_create)
    listing = sub.add_parser("list", help="list tokens (never their values)")
    listing.set_defaults(func=_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(func=_revoke)
