"""Persisting a deployment's transitions and log lines, then publishing them.

A step's log lines are buffered by its run and written in the same transaction as the step's
transition (`save`), so a crash never leaves a log that contradicts the recorded state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.engine.events import EventHub
from bot.engine.model import Deployment, LogLevel, LogLine, Release
from bot.engine.state import StepState
from bot.logs import redact
from bot.store.deployments import DeploymentStore

log = logging.getLogger(__name__)

#: A buffered log line: (timestamp, level, redacted message, step name).
PendingLog = tuple[datetime, LogLevel, str, str | None]


def closing_stamp(d: Deployment, now: datetime) -> datetime:
    """A line written once a deployment has ended carries its end time, so no log line is later
    than the end the log stream reports."""
    return d.ended_at if d.is_final and d.ended_at is not None else now


class Journal:
    """Writes deployment documents and log lines to the store and tells the subscribers."""

    def __init__(self, store: DeploymentStore, events: EventHub, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.events = events
        self.clock = clock

    async def log(self, d: Deployment, message: str, level: LogLevel = "info", step: str | None = None) -> LogLine:
        """Write one log line now (outside any step transition) and publish it."""
        message = redact(message)
        now = closing_stamp(d, self.clock())
        line_id = await self.store.add_log(d.id, now, level, message, step)
        line = LogLine(id=line_id, timestamp=now, level=level, message=message, step=step)
        log.log(logging.ERROR if level == "error" else logging.INFO, "[%s] %s", d.id, message)
        await self.events.emit("log", d, line=line)
        return line

    async def save(self, d: Deployment, state: StepState | None, pending: list[PendingLog] | None = None, *,
                   log_line: str | None = None, level: LogLevel = "info", step: str | None = None,
                   release: Release | None = None, only_if_status: tuple[str, ...] | None = None,
                   **extra: Any) -> tuple[bool, bool]:
        """Persist the document (+ state), the buffered log lines (+ `log_line`) and a release in ONE
        transaction, then publish the log lines. Returns (updated, cancel_requested)."""
        now = self.clock()
        values: dict[str, Any] = {"status": d.status, "document": d.model_dump(mode="json"), "updated_at": now,
                                  **extra}
        if state is not None:
            values["state"] = state.to_json()
        lines = list(pending or [])
        if log_line is not None:
            lines.append((closing_stamp(d, now), level, redact(log_line), step))
        updated, cancel, ids = await self.store.update_and_log(
            d.id, values, lines, release.model_dump() if release is not None else None, only_if_status)
        if not updated:
            return False, False
        for line_id, (timestamp, lvl, message, line_step) in zip(ids, lines, strict=False):
            log.log(logging.ERROR if lvl == "error" else logging.INFO, "[%s] %s", d.id, message)
            await self.events.emit("log", d, line=LogLine(id=line_id, timestamp=timestamp, level=lvl,
                                                          message=message, step=line_step))
        return True, cancel
