"""`CloudflareClient`: one token's view of the Cloudflare API, composed of one module per concern.

Transport (envelope, budget, retries) lives in `transport.py`; the operations in `accounts.py`,
`workers.py`, `containers.py` and `previews.py`. Nothing here imports the
`cloudflare` SDK (about 100 MB installed): the few endpoints are called with httpx directly.
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.cloudflare.accounts import AccountsAPI
from bot.cloudflare.containers import ContainersAPI
from bot.cloudflare.previews import PreviewsAPI
from bot.cloudflare.transport import CloudflareTransport
from bot.cloudflare.workers import VERSION_RETRY_DELAYS, WorkersAPI


class CloudflareClient(AccountsAPI, WorkersAPI, ContainersAPI, PreviewsAPI, CloudflareTransport):
    """`CloudflareClient(http, *, base_url, api_token, budget=None, sleep=asyncio.sleep, ...)`
    (CloudflareTransport's arguments), plus how long to wait for a fresh Worker version to show."""

    def __init__(self, http: httpx.AsyncClient, *, version_retry_delays: tuple[float, ...] = VERSION_RETRY_DELAYS,
                 **transport: Any) -> None:
        super().__init__(http, **transport)
        self.version_retry_delays = version_retry_delays
