"""REST API tokens: only SHA-256 hashes are stored, with scopes, expiry, last use and revocation."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bot.api_auth import hash_token, new_token, parse_scopes
from bot.logs import register_secret
from bot.store.base import UTCDateTime, metadata

if TYPE_CHECKING:
    from bot.store.db import Database

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("token_hash"),
)

#: Writing last_used_at on every request would turn reads into writes; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> ApiToken:
        return cls(
            id=row.id,
            name=row.name,
            scopes=tuple(json.loads(row.scopes)),
            created_at=(row.created_at),
            expires_at=(row.expires_at),
            last_used_at=(row.last_used_at),
            revoked_at=(row.revoked_at),
        )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def token_json(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "scopes": list(token.scopes),
        "createdAt": _iso(token.created_at),
        "expiresAt": _iso(token.expires_at),
        "lastUsedAt": _iso(token.last_used_at),
        "revokedAt": _iso(token.revoked_at),
    }


class ApiTokenStore:
    """Create, look up, list, rotate and revoke API tokens in the shared database."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._db = database
        self._clock = clock

    async def create(self, *, name: str, scopes: list[str], expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
        """Returns the record and the plaintext token (shown to the user once, never stored)."""
        scopes = parse_scopes(scopes)
        if not name.strip():
            raise ValueError("a token needs a name")
        plaintext = new_token()
        register_secret(plaintext)
        now = self._clock()
        record = ApiToken(
            id="tok_" + secrets.token_hex(8),
            name=name.strip()[:200],
            scopes=tuple(scopes),
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            last_used_at=None,
            revoked_at=None,
        )
        async with self._db.begin() as conn:
            await conn.execute(
                api_tokens.insert().values(
                    id=record.id,
                    token_hash=hash_token(plaintext),
                    name=record.name,
                    scopes=json.dumps(list(record.scopes)),
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                )
            )
        return record, plaintext

    async def authenticate(self, plaintext: str) -> ApiToken | None:
        """The usable token with this value (and note its use), or None."""
        now = self._clock()
        async with self._db.begin() as conn:
            row = (
                await conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == hash_token(plaintext)))
            ).first()
            if row is None:
                return None
            token = ApiToken.from_row(row)
            if not token.usable(now):
                return None
            if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
                await conn.execute(api_tokens.update().where(api_tokens.c.id == token.id).values(last_used_at=now))
        return token

    async def get(self, token_id: str) -> ApiToken | None:
        async with self._db.connect() as conn:
            row = (await conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id))).first()
        return ApiToken.from_row(row) if row else None

    async def list(self, *, include_revoked: bool = True) -> list[ApiToken]:
        query = sa.select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if not include_revoked:
            query = query.where(api_tokens.c.revoked_at.is_(None))
        async with self._db.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [ApiToken.from_row(r) for r in rows]

    async def revoke(self, token_id: str) -> bool:
        """True when a live token was revoked now."""
        async with self._db.begin() as conn:
            result = await conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
        return result.rowcount == 1

    async def rotate(self, token: ApiToken, *, expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
        """A new token with the same name and scopes; the old one is revoked in the same breath."""
        if expires_in is None and token.expires_at is not None:
            expires_in = token.expires_at - token.created_at
        new, plaintext = await self.create(name=token.name, scopes=list(token.scopes), expires_in=expires_in)
        await self.revoke(token.id)
        return new, plaintext
