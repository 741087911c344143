"""Serving the app: aiohttp's server, hardened against slow, idle and malformed clients.

`run(app, settings)` is what `flareship serve` runs (`web.run_app`, plus what follows); tests use
`serving(app, host, port, limits=...)` on a real socket. aiohttp leaves four gaps that let a
client without the webhook secret deny service, each closed here (`GuardedRequestHandler`):

- **Time to send a request.** aiohttp has no header or body timeout: a connection that never
  finishes its headers is kept for the keep-alive timeout, and a body trickled at a byte every few
  seconds is read for as long as it takes. Here the headers must arrive within
  `Limits.header_timeout` of the connection (or of the next request's first byte on a kept-alive
  one), and the body within `Limits.body_timeout` of the headers. A late head is answered 408 and
  closed; a late body fails the handler's read, which answers 408 `SYS_004` in the envelope.
- **Connections.** Each costs a file descriptor; past the process limit `accept()` fails (EMFILE)
  and every client, GitHub included, waits. At most `Limits.max_connections` are held (by default what
  the descriptor limit leaves room for, at most 1,024: 768 under 1,024), so `accept()` keeps working. At the cap a
  new connection takes the place of the oldest one that is idle, waiting for its headers or between
  keep-alive requests, as nginx reuses its idle connections: a delivery, which sends its request as
  soon as it connects, is never the one dropped. When every held connection is busy with a
  request, the new one is refused at once (503 in the envelope, then closed).
- **Accept errors.** When `accept()` does fail (descriptors taken elsewhere), asyncio reports
  every attempt, thousands of ERROR lines a second; here one line per `ACCEPT_LOG_INTERVAL` counts them.
- **Parser errors.** aiohttp answers a malformed request (headers over 8,190 bytes, bare CR or LF,
  Content-Length with Transfer-Encoding, a bad chunk) in plain text and logs it at ERROR with a
  traceback. Here the answer is the error envelope (400 `SYS_006`) and the log one INFO line.

Per-connection events (refusals, evictions, timeouts, malformed requests) are logged through a
`LogThrottle`: the first of each kind in an interval at INFO, the rest counted in one line, so that
no flood of clients floods the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.log import access_logger
from aiohttp.web_log import AccessLogger

from bot.errors import FlareshipError, error_body
from bot.logs import new_correlation_id

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

#: GitHub sends a delivery in well under a second, and gives up on an answer after 10 s.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
#: aiohttp's `run_app` default; an idle kept-alive connection is also the first one given up at the cap.
KEEPALIVE_TIMEOUT = 75.0
#: After an early answer (a 413 by Content-Length, say) the rest of the body is read and dropped
#: for at most this long, so that the client reads the answer instead of a reset.
LINGERING_TIME = 5.0
MAX_CONNECTIONS = 1024
BACKLOG = 64
LISTEN_BACKLOG = 1024
ACCEPT_LOG_INTERVAL = 10.0
CLIENT_LOG_INTERVAL = 10.0


def default_max_connections(backlog: int = BACKLOG) -> int:
    """As many connections as the descriptor limit leaves room for, at most MAX_CONNECTIONS.

    asyncio accepts up to `backlog` connections in one go before any of them reaches the guard,
    and the connections they displace are closed only after: twice that is kept free, and so is
    an eighth of the limit (at least 64) for everything else: the database, outgoing HTTP, log
    files. A limit of 1,024 gives 768."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - 2 * backlog - max(64, soft // 8)))


@dataclass(frozen=True)
class Limits:
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    lingering_time: float = LINGERING_TIME
    #: None: `default_max_connections()` when the server starts.
    max_connections: int | None = None
    #: Connections asyncio accepts in one go (each takes a descriptor before the guard sees it).
    backlog: int = BACKLOG
    #: The kernel's queue of connections not accepted yet (capped by net.core.somaxconn). Under a
    #: flood of reconnecting clients a short one fills, and a delivery's SYN is dropped and sent
    #: again only a second later.
    listen_backlog: int = LISTEN_BACKLOG


# -- logging what clients do, without letting them flood the log --------------------------------


@dataclass
class _Window:
    until: float
    level: int
    suppressed: int = 0
    flush: asyncio.TimerHandle | None = None


class LogThrottle:
    """At most one line per `interval` for each kind of event, then one line counting the rest.

    `throttle.log(kind, level, msg, *args)` logs the first event of its kind in an interval as
    given; later ones in the same interval are only counted, and when the interval ends one line
    says how many there were (`"<n> more <kind> in the last 10 s"`).
    """

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def log(self, kind: str, level: int, msg: str, *args: Any) -> None:
        now = self.clock()
        window = self._windows.get(kind)
        if window is not None and now >= window.until:
            self._flush(kind)
            window = None
        if window is None:
            self._windows[kind] = _Window(until=now + self.interval, level=level)
            self.logger.log(level, msg, *args)
            return
        window.suppressed += 1
        if window.flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: the count is reported with the next event of this kind
                return
            window.flush = loop.call_later(max(0.0, window.until - now), self._flush, kind)

    def _flush(self, kind: str) -> None:
        window = self._windows.pop(kind, None)
        if window is None:
            return
        if window.flush is not None:
            window.flush.cancel()
        if window.suppressed:
            self.logger.log(window.level, "%d more %s in the last %.0f s", window.suppressed, kind, self.interval)

    def close(self) -> None:
        for kind in list(self._windows):
            self._flush(kind)


_client_log = LogThrottle(log, CLIENT_LOG_INTERVAL)


def client_event(kind: str, msg: str, *args: Any, level: int = logging.INFO) -> None:
    """Log something a client did (throttled per kind): also for the app's own handlers."""
    _client_log.log(kind, level, msg, *args)


def install_accept_error_throttle(loop: asyncio.AbstractEventLoop, interval: float = ACCEPT_LOG_INTERVAL) -> None:
    """Report `socket.accept() out of system resource` once per `interval`, with a count.

    asyncio calls the loop's exception handler for each failed accept (and retries a second later,
    up to `backlog` attempts at a time); everything else goes to the handler that was there."""
    previous = loop.get_exception_handler()
    throttle = LogThrottle(log, interval)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            exc = context.get("exception")
            throttle.log(
                "failed accept() calls", logging.ERROR,
                "socket.accept() out of system resource (%s): new connections wait until descriptors are free",
                exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__,
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


# -- answers written without a request object -----------------------------------------------------


_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


def _now_iso() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_json(code: str, message: str) -> bytes:
    return orjson.dumps(error_body(code, message, correlation_id=new_correlation_id(), timestamp=_now_iso()))


_REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def raw_error_response(status: int, code: str, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 error answer in the envelope, for a connection that has no request object."""
    body = error_json(code, message)
    head = [f"HTTP/1.1 {status} {_REASONS[status]}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def describe_parser_error(exc: BaseException) -> str:
    """What was wrong with a request aiohttp could not parse, in one printable line without the
    bytes it quotes (they are the client's, and may be anything)."""
    if isinstance(exc, LineTooLong):
        return "A request line or header is too long (at most 8190 bytes)"
    if isinstance(exc, BadHttpMethod):
        return "The request does not start with an HTTP method"
    text = getattr(exc, "message", None) or str(exc)
    if not isinstance(text, str):
        text = str(text)
    kept = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("b'", 'b"', "^")):
            continue
        kept.append(line)
    summary = _PRINTABLE.sub(" ", " ".join(kept)).strip().rstrip(":") or "Malformed HTTP request"
    return summary[:200]


class RequestBodyTimeout(FlareshipError):
    """The body did not arrive within `Limits.body_timeout` of the headers (set on the request's
    stream, so the handler's read raises it and the envelope middleware answers 408)."""

    def __init__(self, seconds: float):
        super().__init__("SYS_004", f"The request body did not arrive within {seconds:g} s",
                         variant="request_timeout")


def drop_rest_of_body(request: web.BaseRequest, error: BaseException) -> None:
    """The handler wants no more of this request's body (it answers, say, 413): fail its stream so
    that what still comes is dropped unread (`GuardedRequestHandler._linger`) rather than read,
    and decompressed, for nothing. Under another server (aiohttp's test server) nothing changes:
    its lingering read drains the body, and would log a failed stream as an error."""
    if isinstance(request.protocol, GuardedRequestHandler):
        request.content.set_exception(error)


# -- the connection cap ---------------------------------------------------------------------------


@dataclass
class ConnectionStats:
    refused: int = 0
    evicted: int = 0
    header_timeouts: int = 0
    body_timeouts: int = 0
    malformed: int = 0


@dataclass
class ConnectionGuard:
    """The connections held, in the order they came; at the cap an idle one gives way."""

    limit: int
    stats: ConnectionStats = field(default_factory=ConnectionStats)
    _open: dict[GuardedRequestHandler, None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, handler: GuardedRequestHandler) -> bool:
        if len(self._open) >= self.limit:
            victim = next((h for h in self._open if h.idle), None)
            if victim is None:
                self.stats.refused += 1
                client_event("connections refused", "connection refused: all %d connections are busy with requests",
                             self.limit)
                return False
            self._open.pop(victim, None)
            self.stats.evicted += 1
            client_event("idle connections closed for new ones",
                         "%d connections open: closed the oldest idle one for a new one", self.limit)
            victim.force_close()
        self._open[handler] = None
        return True

    def release(self, handler: GuardedRequestHandler) -> None:
        self._open.pop(handler, None)


# -- the protocol ---------------------------------------------------------------------------------


class GuardedRequestHandler(web_protocol.RequestHandler):
    """aiohttp's RequestHandler with header and body deadlines, a place under the connection cap,
    and parser errors answered in the envelope (see the module's notes)."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, limits: Limits, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._limits = limits
        self._refused = False
        #: Requests parsed and not yet answered: a connection with none is idle.
        self._unanswered = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # bytes of an unfinished head arrived
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: Any = None  # the stream of the request whose body is awaited
        self._discarding = False  # answered; what still arrives is dropped (`_linger`)
        self._gone: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        return self._unanswered == 0

    # connection life

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._refused = True
            self._discarding = True  # whatever it sends is not read
            transport.write(raw_error_response(503, "SYS_002", "Too many connections; retry shortly", retry_after=1))  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.release(self)
        self._cancel_timers()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        super().connection_lost(exc)

    def force_close(self) -> None:
        self._cancel_timers()
        super().force_close()

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body = None

    # deadlines

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        parsed_before = self._request_count
        super().data_received(data)
        parsed = self._request_count - parsed_before
        if parsed:
            self._unanswered += parsed
            self._head_started = False
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            payload = self._messages[-1][1] if self._messages else None
            if payload is not None and not payload.is_eof() and payload.exception() is None:
                self._arm_body_timer(payload)
        elif data and self._unanswered == 0 and not self._force_close:
            self._head_started = True
            if self._head_timer is None:  # the first bytes of a request on a kept-alive connection
                self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._limits.header_timeout > 0:
            self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        if self._unanswered or self.transport is None:
            return
        self._guard.stats.header_timeouts += 1
        seconds = self._limits.header_timeout
        if self._head_started:
            client_event("requests whose headers came too late",
                         "closed a connection: its request headers did not arrive within %g s", seconds)
            self.transport.write(raw_error_response(408, "SYS_004", f"The request headers did not arrive within {seconds:g} s"))
        else:
            client_event("connections idle too long", "closed a connection that sent no request within %g s", seconds)
        self.force_close()

    def _arm_body_timer(self, payload: Any) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body = payload
        if self._limits.body_timeout > 0:
            self._body_timer = self._loop.call_later(self._limits.body_timeout, self._body_late, payload)

    def _body_late(self, payload: Any) -> None:
        self._body_timer = None
        if payload.is_eof() or payload.exception() is not None:
            return
        self._guard.stats.body_timeouts += 1
        seconds = self._limits.body_timeout
        client_event("request bodies that came too late",
                     "a request body did not arrive within %g s of its headers: answered 408", seconds)
        payload.set_exception(RequestBodyTimeout(seconds))
        self.close()  # no further request on this connection

    async def _handle_request(
        self, request: web.BaseRequest, start_time: float | None,
        request_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        try:
            result = await super()._handle_request(request, start_time, request_handler)
        finally:
            self._unanswered = max(0, self._unanswered - 1)
            payload = request.content
            if self._body is payload:
                if self._body_timer is not None:
                    self._body_timer.cancel()
                    self._body_timer = None
                self._body = None
        # A body that failed (late, a bad encoding, malformed chunks) cannot be read to its end:
        # aiohttp's lingering read would raise the same error and log it with a traceback.
        if not payload.is_eof() and payload.exception() is not None:
            await self._linger()
        return result

    async def _linger(self) -> None:
        """Close after an answer sent while the client may still be sending: end our side (FIN
        after the answer) and drop what still comes until the client closes, for at most
        `lingering_time`. Closing at once, with its bytes unread, would send a reset, and the
        client could lose the answer."""
        transport = self.transport
        if transport is None:
            return
        self._discarding = True
        self._gone = self._loop.create_future()
        try:
            if not transport.is_reading():  # paused while the body's buffer was full: see the client's close
                transport.resume_reading()
            if transport.can_write_eof():
                transport.write_eof()
            await asyncio.wait_for(asyncio.shield(self._gone), self._limits.lingering_time)
        except (TimeoutError, OSError, RuntimeError):
            pass
        finally:
            self.force_close()

    # errors

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            if request.writer.output_size > 0:
                raise ConnectionError("Response is sent already, cannot send another response with the error message")
            summary = describe_parser_error(exc)
            self._guard.stats.malformed += 1
            if not (self._request_count == 1 and isinstance(exc, BadHttpMethod)):
                client_event("malformed requests", "refused a malformed HTTP request from %s: %s", request.remote, summary)
            code, status = "SYS_006", exc.code if 400 <= exc.code < 500 else 400
        else:
            super().handle_error(request, status, exc, message)  # logs as aiohttp does; raises if already answered
            code, summary = ("SYS_004", "The request timed out") if status == 504 else ("SYS_001", "Internal server error")
        response = web.Response(status=status, body=error_json(code, summary), content_type="application/json")
        response.force_close()
        return response


# -- running ---------------------------------------------------------------------------------------


class _GuardedSite(web.BaseSite):
    """A TCP site whose connections are `GuardedRequestHandler`s sharing one `ConnectionGuard`."""

    __slots__ = ("_bound_port", "_factory", "_host", "_listen_backlog", "_port")

    def __init__(self, runner: web.AppRunner, host: str | None, port: int, factory: Callable[[], asyncio.Protocol],
                 *, backlog: int, listen_backlog: int):
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._factory = host, port, factory
        self._listen_backlog = listen_backlog
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self.port}"

    @property
    def port(self) -> int:
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._factory, self._host, self._port, backlog=self._backlog)
        sockets = self._server.sockets
        for listening in sockets:  # a longer queue than asyncio's accept batch: see Limits.listen_backlog
            same = socket.fromfd(listening.fileno(), listening.family, listening.type)  # asyncio hides listen()
            try:
                same.listen(self._listen_backlog)
            finally:
                same.close()
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


@dataclass
class Serving:
    runner: web.AppRunner
    site: _GuardedSite
    guard: ConnectionGuard

    @property
    def port(self) -> int:
        return self.site.port


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str | None, port: int, *, limits: Limits | None = None,
                  handle_signals: bool = False, access_log: logging.Logger | None = access_logger) -> AsyncIterator[Serving]:
    """Start `app` (its start-up and cleanup contexts included) on `host:port`; stop it on exit."""
    limits = limits or Limits()
    guard = ConnectionGuard(limits.max_connections or default_max_connections(limits.backlog))
    handler_args: dict[str, Any] = {
        "keepalive_timeout": limits.keepalive_timeout,
        "lingering_time": limits.lingering_time,
        "access_log_class": AccessLogger,
        "access_log": access_log,
    }
    runner = web.AppRunner(app, handle_signals=handle_signals, **handler_args)
    await runner.setup()
    try:
        loop = asyncio.get_running_loop()
        server = runner.server
        assert server is not None

        def factory() -> GuardedRequestHandler:
            return GuardedRequestHandler(server, guard=guard, limits=limits, loop=loop, **handler_args)

        site = _GuardedSite(runner, host, port, factory, backlog=limits.backlog, listen_backlog=limits.listen_backlog)
        await site.start()
        yield Serving(runner, site, guard)
    finally:
        await runner.cleanup()
        _client_log.close()


async def _serve_forever(app: web.Application, host: str | None, port: int, limits: Limits) -> None:
    async with serving(app, host, port, limits=limits, handle_signals=True) as running:
        log.info("serving on %s (at most %d connections; headers within %g s, bodies within %g s)",
                 running.site.name, running.guard.limit, limits.header_timeout, limits.body_timeout)
        await asyncio.Event().wait()  # until cancelled (SIGINT, SIGTERM)


def run(app: web.Application, settings: Settings, *, host: str | None = None, port: int | None = None,
        limits: Limits | None = None) -> None:
    """Serve `app` until SIGINT or SIGTERM (what `web.run_app` does, with the guards above)."""
    host = host if host is not None else settings.host
    port = port if port is not None else settings.port
    loop = asyncio.new_event_loop()
    install_accept_error_throttle(loop)
    main = loop.create_task(_serve_forever(app, host, port, limits or Limits()))
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()
