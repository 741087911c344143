"""Signed, expiring links to a deployment's live page: the check run's Details link.

The page opens from GitHub without an API token (README.md, "The Details page"): its link carries
`?token=EXPIRES.SIGNATURE`, an HMAC-SHA256 over the deployment id and the expiry time, keyed by
a key derived (HKDF) from the webhook secret, the one secret every Flareship has. A token lets
its holder read that one deployment's page until it expires, nothing else; rotating the webhook
secret revokes every link. Expiry falls on a UTC midnight, so a check run re-rendered many times
in a day keeps one link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bot.errors import FlareshipError

#: How long a Details link opens the page. Check runs stay on GitHub for good; their links do not.
LINK_LIFETIME = timedelta(days=30)
_DAY = 86400


class DetailsLinks:
    def __init__(self, secret: str | None, public_url: str, lifetime: timedelta = LINK_LIFETIME):
        # Without a webhook secret (an API-only setup), links are signed with a key of this process:
        # they work until it restarts.
        material = secret.encode() if secret else secrets.token_bytes(32)
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"flareship details link v1").derive(
            material
        )
        self.public_url = public_url.rstrip("/")
        self.lifetime = lifetime

    def url(self, deployment_id: str, now: datetime | None = None) -> str:
        """The page's address with a token valid for at least `lifetime` from `now`."""
        now = now or datetime.now(UTC)
        expires = math.ceil((now + self.lifetime).timestamp() / _DAY) * _DAY
        return f"{self.public_url}/deployments/{quote(deployment_id, safe='')}?token={self.token(deployment_id, expires)}"

    def token(self, deployment_id: str, expires: int) -> str:
        return f"{expires}.{self._signature(deployment_id, expires)}"

    def check(self, deployment_id: str, token: str | None, now: datetime | None = None) -> None:
        """Raise AUTH_007 (401) unless `token` was issued for `deployment_id` and has not expired."""
        if not token:
            raise FlareshipError("AUTH_007", "This page needs the signed link from the check run's Details button")
        expires_text, _, signature = token.partition(".")
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12 or not hmac.compare_digest(
            signature, self._signature(deployment_id, int(expires_text))
        ):
            raise FlareshipError("AUTH_007", "This link is not valid for this deployment")
        expires = datetime.fromtimestamp(int(expires_text), UTC)
        if (now or datetime.now(UTC)) >= expires:
            raise FlareshipError(
                "AUTH_007",
                f"This link expired on {expires:%Y-%m-%d}; the deployment stays readable through the REST API "
                "(GET /deploy/{id}/status with an API token)",
            )

    def _signature(self, deployment_id: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{deployment_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
