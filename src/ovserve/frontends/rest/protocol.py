"""HTTP/1.1 on httptools: whole requests in, one write per response out.

Measured on the tiny model, uvicorn's ASGI path spent about 40% of the event loop's time in
its two ``transport.write`` calls per response (status line and headers, then the body: two
loopback packets, two wake-ups of the client). This protocol answers with one ``writelines``
and skips the ASGI message machinery; everything else is the HTTP/1.1 a model server needs:
keep-alive with an idle timeout, in-order pipelining, ``Expect: 100-continue``, chunked request
bodies (decoded by httptools), a body-size limit answered with 413 before the body is read,
and a graceful shutdown that lets in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import unquote

import httptools

from ovserve.errors import ErrorCode, InvalidInput, OvserveError, RequestTooLarge
from ovserve.frontends.rest.http import Request, Response, error_response

log = logging.getLogger(__name__)

Handle = Callable[[Request], Awaitable[Response]]

KEEP_ALIVE_SECONDS: Final = 60.0
"""Idle time after which a keep-alive connection is closed."""
MAX_PIPELINED: Final = 16
"""Requests queued on one connection before reading from it pauses."""

_STATUS_LINES: Final = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class ServerState:
    """What the connections of one server share: for shutdown."""

    connections: set[HttpProtocol] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Pending:
    request: Request
    keep_alive: bool
    refusal: Response | None
    """The answer when the request is refused before the handler (then the connection closes)."""


class HttpProtocol(asyncio.Protocol):
    """One client connection; requests run one at a time, answered in order."""

    def __init__(
        self,
        handle: Handle,
        state: ServerState,
        max_body_bytes: int,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
    ) -> None:
        self._handle = handle
        self._state = state
        self._max_body = max_body_bytes
        self._keep_alive_seconds = keep_alive_seconds
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self._closing = False
        self._reading_paused = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None
        self._reset_message()

    # --- connection events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection and start its idle timer."""
        # uvloop's TCP transport has the Transport methods without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._state.connections.add(self)
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; a request still running finds the transport closed."""
        self._state.connections.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._queue.clear()
        self._closing = True

    def data_received(self, data: bytes) -> None:
        """Feed the parser; malformed HTTP gets a 400 and the connection closes."""
        self._cancel_idle_timer()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade offer (curl's h2c, websockets) is declined by answering in HTTP/1.1;
            # the parser stops at the upgrade, so the connection closes after that answer.
            self._closing = True
            if not self._busy and not self._queue:
                self._fail("protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self._fail(str(error) or "malformed HTTP request")

    def eof_received(self) -> bool:
        """Keep the socket open for the answers still owed after the client's half-close."""
        self._closing = True
        return self._busy or bool(self._queue)

    def shutdown(self) -> None:
        """Graceful stop: close now when idle, else after the current answer."""
        self._closing = True
        if not self._busy and not self._queue and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once (the grace period is over)."""
        if self._transport is not None:
            self._transport.abort()

    # --- parser callbacks (called by httptools) ------------------------------------------------

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large: int | None = None

    def on_message_begin(self) -> None:
        """A new request starts."""
        self._reset_message()

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (names lower-cased, as the handlers expect)."""
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        """Spot a declared body over the limit; honour ``Expect: 100-continue``."""
        expect_continue = False
        for name, value in self._headers:
            if name == b"content-length" and value.strip().isdigit():
                length = int(value)
                if length > self._max_body:
                    self._too_large = length
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                expect_continue = True
        transport = self._transport
        if not expect_continue or transport is None:
            return
        if self._too_large is None:
            transport.write(_CONTINUE)
        elif not self._busy and not self._queue:
            # The client waits before sending the body: answer now and never read it.
            self._write(transport, _too_large(self._too_large, self._max_body), False, head=False)
            transport.close()

    def on_body(self, body: bytes) -> None:
        """Collect the body; past the limit it is read and dropped, then answered with 413.

        Reading the rest (instead of closing at once) lets the client see the 413: closing a
        socket with unread data makes the kernel reset the connection.
        """
        if self._too_large is not None:
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._too_large = self._size
            self._chunks.clear()
            return
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        """Queue the finished request; start it when the connection is free."""
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        parsed = httptools.parse_url(self._url)
        path = parsed.path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        request = Request(self._parser.get_method().decode(), path, self._headers, body)
        refusal = self._refusal(body)
        self._queue.append(_Pending(request, self._parser.should_keep_alive(), refusal))
        if refusal is not None or len(self._queue) >= MAX_PIPELINED:
            self._pause_reading()
        if not self._busy:
            self._start_next()

    def _refusal(self, body: bytes) -> Response | None:
        if self._too_large is not None:
            return _too_large(self._too_large, self._max_body)
        if self._parser.should_upgrade() and not body:
            # llhttp leaves the body of an upgrade offer (curl --http2 on http://) unread.
            for name, value in self._headers:
                if name == b"content-length" and value.strip() not in (b"", b"0"):
                    return error_response(
                        InvalidInput(
                            "HTTP upgrade offers with a body are not supported; use HTTP/1.1"
                        )
                    )
        return None

    # --- answering -----------------------------------------------------------------------------

    def _start_next(self) -> None:
        pending = self._queue.popleft()
        self._busy = True
        task = self._loop.create_task(self._answer(pending))
        self._state.tasks.add(task)
        task.add_done_callback(self._state.tasks.discard)

    async def _answer(self, pending: _Pending) -> None:
        keep_alive = pending.keep_alive and pending.refusal is None
        if pending.refusal is not None:
            response = pending.refusal
        else:
            try:
                response = await self._handle(pending.request)
            except Exception:
                log.exception("%s %s failed", pending.request.method, pending.request.path)
                response = error_response(OvserveError(code=ErrorCode.INTERNAL))
        self._busy = False
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = keep_alive and not (self._closing and not self._queue)
        self._write(transport, response, keep_alive, head=pending.request.method == "HEAD")
        if not keep_alive:
            transport.close()
        elif self._queue:
            self._start_next()
            if len(self._queue) < MAX_PIPELINED:
                self._resume_reading()
        else:
            self._resume_reading()
            self._arm_idle_timer()

    def _write(
        self, transport: asyncio.Transport, response: Response, keep_alive: bool, head: bool
    ) -> None:
        parts = [
            _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} \r\n".encode(),
            b"content-type: ",
            response.content_type,
            b"\r\ncontent-length: ",
            str(len(response.body)).encode(),
            b"\r\n",
        ]
        for name, value in response.headers:
            parts += [name, b": ", value, b"\r\n"]
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head_bytes = b"".join(parts)
        if head or not response.body:
            transport.write(head_bytes)
        else:
            # One vectored write: status line, headers and body leave in one packet when small.
            transport.writelines((head_bytes, response.body))

    def _fail(self, reason: str) -> None:
        log.info("Closing a connection after malformed HTTP: %s", reason)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._busy and not self._queue:
            self._write(transport, _BAD_REQUEST_RESPONSE, keep_alive=False, head=False)
        transport.close()

    # --- flow control and timers ---------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    def _arm_idle_timer(self) -> None:
        # One lazy timer per connection: re-arming it on every request would cost a timer
        # handle each time; instead the callback re-schedules itself while there is traffic.
        self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_later(self._keep_alive_seconds, self._idle_timeout)

    def _cancel_idle_timer(self) -> None:
        self._idle_since = None

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._busy or self._idle_since is None:
            self._idle_timer = self._loop.call_later(self._keep_alive_seconds, self._idle_timeout)
            return
        remaining = self._idle_since + self._keep_alive_seconds - self._loop.time()
        if remaining > 0:
            self._idle_timer = self._loop.call_later(remaining, self._idle_timeout)
        else:
            transport.close()


_BAD_REQUEST_RESPONSE: Final = Response(
    HTTPStatus.BAD_REQUEST.value, b'{"error":"Invalid HTTP request"}'
)


def _too_large(size: int, limit: int) -> Response:
    return error_response(RequestTooLarge(f"body of {size} bytes; the limit is {limit} bytes"))
