"""One request budget per Cloudflare token: a sliding window that never crosses the API limit.

Cloudflare allows 1200 requests per 5 minutes per token (dashboard and API together) and, once
crossed, blocks every call of that token for 5 minutes. So the bot counts before it sends: a
request waits for a free slot, or fails at once (SYS_003) when the wait would be too long. After a
429 the whole token pauses for the time Cloudflare asked, so parallel deployments stop together.

`RequestBudget` counts in this process (SQLite installs: one process). `SharedRequestBudget`
counts in a window every replica shares (PostgreSQL, `bot.store.cloudflare_budget`), so replicas
together stay under the token's limit.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.cloudflare.errors import BudgetExhausted

DEFAULT_LIMIT = 1200
DEFAULT_WINDOW = 300.0


class RequestBudget:
    """Sliding-window limiter shared by every client using one token.

    `clock` and `sleep` are injectable so tests run the window without waiting for it.
    `max_wait`: the longest a caller waits for a slot (or for a 429 pause) before BudgetExhausted.
    `headroom`: slots kept back for the dashboard and other tools using the same token.
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        *,
        headroom: int = 0,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        if limit - headroom < 1:
            raise ValueError("budget limit must leave at least one request")
        self.limit = limit - headroom
        self.window = window
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self.total_acquired = 0
        self.peak_in_window = 0

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def in_window(self) -> int:
        """Requests counted in the current window."""
        self._trim(self._clock())
        return len(self._sent)

    def paused_for(self) -> float:
        """Seconds left in a pause imposed by a 429 (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def wait_time(self) -> float:
        """How long the next request would have to wait (0 = now)."""
        now = self._clock()
        self._trim(now)
        wait = max(0.0, self._paused_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[len(self._sent) - self.limit] + self.window - now)
        return wait

    async def acquire(self) -> None:
        """Take one slot, waiting for it when the wait is short; BudgetExhausted otherwise."""
        while True:
            wait = self.wait_time()
            if wait <= 0:
                self._sent.append(self._clock())
                self.total_acquired += 1
                self.peak_in_window = max(self.peak_in_window, len(self._sent))
                return
            if wait > self.max_wait:
                raise BudgetExhausted(wait)
            await self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Stop every request of this token for `seconds` (after Cloudflare answered 429)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


class SlotSource(Protocol):
    """A window counted outside this process (`bot.store.cloudflare_budget.SharedWindow`)."""

    async def take(self, limit: int, window: float) -> tuple[float, int]:
        """(0, counted) after taking one slot, or (seconds until one frees, counted) taking nothing;
        `counted`: the requests of every replica in the window."""
        ...


class SharedRequestBudget(RequestBudget):
    """A budget whose window `slots` keeps for every replica; 429 pauses stay per process.

    `in_window` (metrics' headroom) is every replica's count as the last request of this process
    found it, while that is less than a window old; this process's own count after that.
    """

    def __init__(self, slots: SlotSource, limit: int = DEFAULT_LIMIT, window: float = DEFAULT_WINDOW,
                 **kwargs: Any):
        super().__init__(limit, window, **kwargs)
        self.slots = slots
        self._shared_seen: tuple[float, int] = (float("-inf"), 0)

    def in_window(self) -> int:
        seen_at, counted = self._shared_seen
        own = super().in_window()
        return max(own, counted) if self._clock() - seen_at < self.window else own

    async def acquire(self) -> None:
        while True:
            wait = self.paused_for()
            if wait <= 0:
                wait, counted = await self.slots.take(self.limit, self.window)
                self._shared_seen = (self._clock(), counted)
                if wait <= 0:
                    now = self._clock()
                    self._trim(now)
                    self._sent.append(now)
                    self.total_acquired += 1
                    self.peak_in_window = max(self.peak_in_window, len(self._sent))
                    return
            if wait > self.max_wait:
                raise BudgetExhausted(wait)
            await self._sleep(wait)
