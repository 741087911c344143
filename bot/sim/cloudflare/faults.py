"""Fault and latency injection for the simulated Cloudflare, per endpoint.

A fault matches a method and a path pattern (`fnmatch`, `*` also crosses `/`; or `re:<regex>`)
relative to `/client/v4`, fires `times` times, and either answers an error (status and/or
Cloudflare code, `retry-after`), stalls past the client's timeout (`delay`), or drops the
connection (`reset`). With `after=True` the request is carried out first and only its answer is
lost - the ambiguous failure that tempts a client into creating things twice.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

#: Default HTTP status for an injected Cloudflare code.
CODE_STATUS = {
    971: 429, 1000: 401, 9106: 401, 9109: 403, 10000: 403, 7003: 404, 10007: 404, 10021: 400, 10027: 413,
    10037: 403, 10075: 403, 100146: 404, 10220: 400, 10031: 409,
}


@dataclass
class Fault:
    method: str
    pattern: str
    status: int | None = None
    error_code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float | None = None
    reset: bool = False
    times: int | None = 1
    after: bool = False
    hits: int = 0
    _regex: re.Pattern | None = field(default=None, repr=False)

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.pattern.startswith("re:"):
            if self._regex is None:
                self._regex = re.compile(self.pattern[3:])
            return bool(self._regex.fullmatch(path))
        return fnmatch.fnmatchcase(path, self.pattern)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def error(self) -> tuple[int, int, str, dict]:
        """(status, code, message, headers) for an error fault."""
        code = self.error_code if self.error_code is not None else (971 if self.status == 429 else 10013)
        status = self.status or CODE_STATUS.get(code, 400 if self.error_code is not None else 500)
        headers = {}
        retry_after = self.retry_after if self.retry_after is not None else (1 if status == 429 else None)
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after) if float(retry_after).is_integer() else retry_after)
        message = self.message or ("Rate limited" if status == 429 else f"Injected fault (HTTP {status})")
        return status, code, message, headers


class FaultInjector:
    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.endpoint_latency: list[tuple[str, str, float]] = []

    def add(self, method: str, path_pattern: str, *, status: int | None = None, error_code: int | None = None,
            message: str | None = None, retry_after: float | None = None, delay: float | None = None,
            reset: bool = False, times: int | None = 1, after: bool = False) -> Fault:
        if status is None and error_code is None and delay is None and not reset:
            raise ValueError("a fault needs status, error_code, delay or reset")
        fault = Fault(method, path_pattern, status, error_code, message, retry_after, delay, reset, times, after)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()
        self.endpoint_latency.clear()
        self.latency = 0.0

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching the request (counted as a hit)."""
        for fault in self.faults:
            if not fault.exhausted and fault.matches(method, path):
                fault.hits += 1
                return fault
        return None

    def set_latency(self, seconds: float, method: str = "*", path_pattern: str | None = None) -> None:
        if path_pattern is None and method == "*":
            self.latency = seconds
        else:
            self.endpoint_latency.append((method, path_pattern or "*", seconds))

    def latency_for(self, method: str, path: str) -> float:
        extra = 0.0
        for m, pattern, seconds in self.endpoint_latency:
            if (m == "*" or m.upper() == method.upper()) and fnmatch.fnmatchcase(path, pattern):
                extra = max(extra, seconds)
        return self.latency + extra
