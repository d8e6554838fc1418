"""HTTP/1.1 on httptools: whole requests in, one write per response out.

Reads go into buffers the protocol provides (``asyncio.BufferedProtocol``): headers and small
bodies through one scratch buffer per server into the parser, the rest of a large declared body
straight into its own buffer (:mod:`.body`), so its bytes are copied once, by the kernel.

Measured on the tiny model, uvicorn's ASGI path spent about 40% of the event loop's time in
its two ``transport.write`` calls per response (status line and headers, then the body: two
loopback packets, two wake-ups of the client). This protocol answers with one ``writelines``
and skips the ASGI message machinery; everything else is the HTTP/1.1 a model server needs:
keep-alive with an idle timeout, in-order pipelining, ``Expect: 100-continue``, chunked request
bodies (decoded by httptools) and a graceful shutdown that lets in-flight requests finish.

Hostile or broken clients are bounded (limits in :mod:`.limits`): a request whose headers do
not arrive within the header timeout, or whose body stalls past the body timeout, is answered
408; at the connection cap a new connection closes the oldest one that is idle or still
sending its request (so a flood of stalled connections cannot lock out good clients), and is
refused with 503 only when every connection is busy being answered; a body over the size
limit is answered 413 as soon as its declared length (or its chunked length so far) passes the
limit, and the rest of the body is never buffered; replies the client does not read pause reading
(:mod:`.flow_control`); large bodies take their size from the process's request budget
before they are read (:mod:`ovserve.frontends.request_budget`).
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

from ovserve.errors import ErrorCode, InvalidInput, OvserveError, ServerBusy
from ovserve.frontends.failure_log import FAILURES
from ovserve.frontends.read_wakeup import ReadWakeup
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.rest import refusals
from ovserve.frontends.rest.body import BodyReader
from ovserve.frontends.rest.deadline import Deadline
from ovserve.frontends.rest.flow_control import FlowControl, Reason
from ovserve.frontends.rest.http import Body, Request, Response, error_response
from ovserve.frontends.rest.limits import HttpLimits

log = logging.getLogger(__name__)

Handle = Callable[[Request], Awaitable[Response]]

MAX_PIPELINED: Final = 16
"""Requests queued on one connection before reading from it pauses."""

_STATUS_LINES: Final = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode() for status in HTTPStatus
}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_REQUEST: Final = Request("", "", [], b"")
READ_BUFFER_BYTES: Final = 64 * 1024
"""The scratch buffer that headers and small bodies are read into (one per server)."""


@dataclass
class ServerState:
    """What the connections of one server share: limits, the request budget, for shutdown."""

    connections: dict[HttpProtocol, None] = field(default_factory=dict)
    """Open connections, oldest first (a dict keeps insertion order)."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    limits: HttpLimits = field(default_factory=HttpLimits)
    budget: RequestBudget = field(default_factory=lambda: RequestBudget(0))
    read_buffer: memoryview = field(
        default_factory=lambda: memoryview(bytearray(READ_BUFFER_BYTES))
    )
    """Shared by the connections: the loop reads into it and hands it straight to the parser."""


@dataclass(frozen=True, slots=True)
class _Pending:
    request: Request
    keep_alive: bool
    refusal: Response | None
    """The answer when the request is refused before the handler (then the connection closes)."""
    cost: int = 0
    """Bytes this request holds (or, when not ``reserved``, still needs) from the budget."""
    reserved: bool = True


class HttpProtocol(asyncio.BufferedProtocol):
    """One client connection; requests run one at a time, answered in order."""

    def __init__(
        self,
        handle: Handle,
        state: ServerState,
        max_body_bytes: int,
        keep_alive_seconds: float | None = None,
    ) -> None:
        self._handle = handle
        self._state = state
        self._limits = state.limits
        self._budget = state.budget
        self._max_body = max_body_bytes
        self._keep_alive_seconds = (
            keep_alive_seconds if keep_alive_seconds is not None else state.limits.keep_alive
        )
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._flow: FlowControl | None = None
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self._closing = False
        self._discarding = False
        self._in_message = False
        self._headers_done = False
        self._message_started: float | None = None
        self._method = ""
        self._keep_alive = True
        self._body = BodyReader()
        self._read_buffer = state.read_buffer
        self._held = 0
        """Budget bytes taken for the message being read."""
        self._budget_waiter: asyncio.Task[None] | None = None
        self._deadline = Deadline(self._loop, self._on_deadline)
        self._wakeup = ReadWakeup(self._loop)
        """Wakes the loop once a large body is in, not per segment (see :mod:`read_wakeup`)."""
        self._reset_message()

    # --- connection events ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection and start its idle timer; refuse it past the cap."""
        # uvloop's TCP transport has the Transport methods without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        connections = self._state.connections
        if len(connections) >= self._limits.max_connections and not _evict_one(connections):
            self._discarding = self._closing = True
            FAILURES.record("REST", "503 too many connections", "every connection is busy")
            self._write(
                self._transport, refusals.TOO_MANY_CONNECTIONS, keep_alive=False, head=False
            )
            self._transport.close()
            return
        self._flow = FlowControl(
            self._transport, self._limits.write_buffer_high, self._limits.write_buffer_low
        )
        connections[self] = None
        self._wakeup.attach(self._transport)
        # The first request must start as promptly as its headers must finish.
        first_wait = min(self._keep_alive_seconds, self._limits.header_timeout)
        self._deadline.set(self._loop.time() + first_wait, idle=True)

    @property
    def evictable(self) -> bool:
        """True when no request of this connection is being answered or waits to be."""
        return not self._busy and not self._queue and not self._closing

    def evict(self) -> None:
        """Make room for a new connection: a request half-read gets 408, then close at once."""
        self._state.connections.pop(self, None)
        self._closing = self._discarding = True
        transport = self._transport
        if transport is None:
            return
        if self._in_message:
            self._write(transport, refusals.EVICTED, keep_alive=False, head=False)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection; a request still running finds the transport closed."""
        self._state.connections.pop(self, None)
        self._deadline.cancel()
        self._wakeup.close()
        if self._budget_waiter is not None:
            self._budget_waiter.cancel()
        self._budget.give_back(self._held)
        self._held = 0
        for pending in self._queue:
            if pending.reserved:
                self._budget.give_back(pending.cost)
        self._queue.clear()
        self._body.reset()
        self._closing = True

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the loop reads next: the missing part of a large body, else the scratch buffer."""
        if self._body.direct and not self._discarding:
            return self._body.window()
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the buffer from :meth:`get_buffer`."""
        if self._discarding:
            self._wakeup.expect(0)
            return
        if self._body.direct:
            # A large body arrives in a few reads (a dozen per 602 KB without the read wake-up
            # threshold): keep this lean.
            if self._body.received(nbytes):
                self._wakeup.expect(0)
                self._deadline.clear()
                self._body_complete()
            else:
                self._wakeup.expect(self._body.missing)
                self._deadline.set(self._loop.time() + self._limits.body_timeout, idle=False)
            return
        self._deadline.clear()
        # Into the parser; malformed HTTP gets a 400 and the connection closes.
        try:
            self._parser.feed_data(self._read_buffer[:nbytes])
        except httptools.HttpParserUpgrade:
            # An upgrade offer (curl's h2c, websockets) is declined by answering in HTTP/1.1;
            # the parser stops at the upgrade, so the connection closes after that answer.
            self._closing = True
            if not self._busy and not self._queue:
                self._fail("protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self._fail(str(error) or "malformed HTTP request")
        if self._in_message and not self._discarding:
            if self._headers_done and self._budget_waiter is None and not self._open_body():
                return
            self._wakeup.expect(self._body.missing)
            self._watch_partial_request()

    def eof_received(self) -> bool:
        """Keep the socket open for the answers still owed after the client's half-close."""
        self._closing = True
        return self._busy or bool(self._queue)

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests."""
        if self._flow is not None:
            self._flow.writing_paused()

    def resume_writing(self) -> None:
        """The client caught up: read again and answer what is queued."""
        if self._flow is None:
            return
        self._flow.writing_resumed()
        if not self._busy and self._queue:
            self._start_next()

    def shutdown(self) -> None:
        """Graceful stop: close now when idle, else after the answer owed.

        A request still arriving (its body on the way) is read to the end and answered: the
        client sent it before the stop.
        """
        self._closing = True
        if self.settled and self._transport is not None:
            self._transport.close()

    @property
    def _receiving(self) -> bool:
        return self._in_message and not self._discarding

    @property
    def settled(self) -> bool:
        """True when nothing of a request is being received or answered."""
        return not self._busy and not self._queue and not self._receiving

    def abort(self) -> None:
        """Close at once (the grace period is over)."""
        if self._transport is not None:
            self._transport.abort()

    # --- parser callbacks (called by httptools) ------------------------------------------------

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body.reset()

    def on_message_begin(self) -> None:
        """A new request starts."""
        self._reset_message()
        self._in_message = True
        self._headers_done = False
        self._message_started = None

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header (names lower-cased, as the handlers expect)."""
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        """Refuse a declared body over the limit; reserve memory; honour 100-continue."""
        self._headers_done = True
        self._method = self._parser.get_method().decode()
        self._keep_alive = self._parser.should_keep_alive()
        expect_continue = False
        length: int | None = None
        for name, value in self._headers:
            if name == b"content-length" and value.strip().isdigit():
                length = int(value)
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                expect_continue = True
        if length is not None and length > self._max_body:
            self._refuse_now(refusals.too_large(length, self._max_body))
            return
        # An upgrade offer's body is never parsed: its message completes with the headers, so
        # the reader never opens a buffer for it.
        self._body.expect(length)
        cost = self._budget.cost(length) if length is not None else 0
        if cost and not self._budget.try_take(cost):
            self._wait_for_budget(cost, expect_continue)
            return
        self._held = cost
        if expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        """Collect the body; past the limit the request is answered 413 at once."""
        if self._discarding:
            return
        size = self._body.size + len(body)
        if size > self._max_body:
            self._body.reset()
            self._refuse_now(refusals.too_large(size, self._max_body))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        """Queue the finished request; start it when the connection is free."""
        if self._discarding:
            return
        self._in_message = False
        body = self._body.take()
        self._queue_request(body, self._keep_alive, self._refusal(body))

    def _open_body(self) -> bool:
        """Give the rest of a declared body its buffer; False (and 503) when memory is short."""
        try:
            self._body.open()
        except MemoryError:
            self._refuse_now(
                error_response(ServerBusy(f"no memory for a body of {self._body.expected} bytes"))
            )
            return False
        return True

    def _body_complete(self) -> None:
        """The last byte of a body read straight into its buffer arrived.

        The parser never saw those bytes, so it is replaced for the next request.
        """
        self._in_message = False
        self._parser = httptools.HttpRequestParser(self)
        self._queue_request(self._body.take(), self._keep_alive, None)

    def _queue_request(self, body: Body, keep_alive: bool, refusal: Response | None) -> None:
        request = self._request(body)
        held, self._held = self._held, 0
        if held or refusal is not None:
            pending = _Pending(request, keep_alive, refusal, held)
        else:
            # A chunked body (no declared length) takes its share once it is complete.
            cost = self._budget.cost(len(body))
            pending = _Pending(request, keep_alive, None, cost, not cost)
        self._queue.append(pending)
        if refusal is not None:
            self._pause(Reason.REFUSED)
        elif len(self._queue) >= MAX_PIPELINED:
            self._pause(Reason.QUEUE_FULL)
        if not self._busy:
            self._start_next()

    def _request(self, body: Body) -> Request:
        parsed = httptools.parse_url(self._url)
        path = parsed.path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        method = self._method if self._headers_done else self._parser.get_method().decode()
        return Request(method, path, self._headers, body)

    def _refusal(self, body: Body) -> Response | None:
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

    def _refuse_now(self, response: Response) -> None:
        """Answer the request being read with ``response`` (after those before it) and close.

        Nothing more is parsed from this connection: the rest of its bytes are dropped.
        """
        self._discarding = True
        self._in_message = False
        self._body.reset()
        self._deadline.clear()
        self._budget.give_back(self._held)
        self._held = 0
        if self._budget_waiter is not None:
            self._budget_waiter.cancel()
            self._budget_waiter = None
        try:
            request = self._request(b"")
        except (httptools.HttpParserInvalidURLError, httptools.HttpParserError):
            request = _NO_REQUEST
        self._queue.append(_Pending(request, False, response))
        self._pause(Reason.REFUSED)
        if not self._busy:
            self._start_next()

    def _wait_for_budget(self, cost: int, expect_continue: bool) -> None:
        """Stop reading this body until the budget grants ``cost`` bytes (or refuse it)."""
        self._pause(Reason.BUDGET)
        self._deadline.clear()
        self._budget_waiter = self._loop.create_task(self._take_budget(cost, expect_continue))

    async def _take_budget(self, cost: int, expect_continue: bool) -> None:
        try:
            await self._budget.take(cost)
        except OvserveError as error:
            self._budget_waiter = None
            self._refuse_now(error_response(error))
            return
        self._budget_waiter = None
        transport = self._transport
        if transport is None or transport.is_closing() or self._discarding:
            self._budget.give_back(cost)
            return
        self._held = cost
        if expect_continue:
            transport.write(_CONTINUE)
        if not self._open_body():
            return
        self._wakeup.expect(self._body.missing)
        self._resume(Reason.BUDGET)
        self._watch_partial_request()

    # --- answering -----------------------------------------------------------------------------

    def _start_next(self) -> None:
        pending = self._queue.popleft()
        self._busy = True
        task = self._loop.create_task(self._answer(pending))
        self._state.tasks.add(task)
        task.add_done_callback(self._state.tasks.discard)

    async def _answer(self, pending: _Pending) -> None:
        keep_alive = pending.keep_alive and pending.refusal is None
        taken = pending.cost if pending.reserved else 0
        try:
            if pending.refusal is not None:
                response = pending.refusal
            else:
                if not pending.reserved:
                    await self._budget.take(pending.cost)
                    taken = pending.cost
                response = await self._handle(pending.request)
        except OvserveError as error:
            response = error_response(error)
        except Exception:
            log.exception("%s %s failed", pending.request.method, pending.request.path)
            response = error_response(OvserveError(code=ErrorCode.INTERNAL))
        finally:
            self._budget.give_back(taken)
        self._busy = False
        if response.status >= 400:
            refusals.record_failure(pending.request, response)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        keep_alive = keep_alive and not (self._closing and not self._queue)
        self._write(transport, response, keep_alive, head=pending.request.method == "HEAD")
        if pending.refusal is not None:
            self._linger_then_close(transport)
        elif not keep_alive:
            transport.close()
        elif self._queue:
            if self._flow is None or not self._flow.writes_backed_up:
                self._start_next()
            if len(self._queue) < MAX_PIPELINED:
                self._resume(Reason.QUEUE_FULL)
        else:
            self._resume(Reason.QUEUE_FULL)
            if not self._in_message:
                self._deadline.set(self._loop.time() + self._keep_alive_seconds, idle=True)

    def _write(
        self, transport: asyncio.Transport, response: Response, keep_alive: bool, head: bool
    ) -> None:
        parts = [
            _STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} \r\n".encode(),
            b"content-type: ",
            response.content_type,
            b"\r\ncontent-length: ",
            str(response.length).encode(),
            b"\r\n",
        ]
        for name, value in response.headers:
            parts += [name, b": ", value, b"\r\n"]
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head_bytes = b"".join(parts)
        if head or not (response.body or response.tail):
            transport.write(head_bytes)
        else:
            # One vectored write: status line, headers and body leave in one packet when small;
            # binary outputs go from their arrays' memory to the socket without being joined.
            transport.writelines((head_bytes, response.body, *response.tail))

    def _linger_then_close(self, transport: asyncio.Transport) -> None:
        """Drop what the client still sends for a moment, then close.

        Closing a socket with unread data makes the kernel reset the connection, and a reset
        can destroy the answer before the client reads it.
        """
        self._discarding = True
        self._closing = True
        if self._flow is not None:
            for reason in Reason:
                self._flow.resume(reason)
        self._loop.call_later(self._limits.linger, transport.close)

    def _fail(self, reason: str) -> None:
        FAILURES.record("REST", "400 malformed HTTP", reason)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._busy and not self._queue:
            self._write(transport, refusals.BAD_REQUEST, keep_alive=False, head=False)
        transport.close()

    # --- flow control and timers ---------------------------------------------------------------

    def _pause(self, reason: Reason) -> None:
        if self._flow is not None:
            self._flow.pause(reason)

    def _resume(self, reason: Reason) -> None:
        if self._flow is not None:
            self._flow.resume(reason)

    def _watch_partial_request(self) -> None:
        """Part of a request arrived: its headers, then each silence in its body, are timed."""
        now = self._loop.time()
        if not self._headers_done:
            if self._message_started is None:
                self._message_started = now
            self._deadline.set(self._message_started + self._limits.header_timeout, idle=False)
        elif self._flow is None or not self._flow.paused_for(Reason.BUDGET):
            self._deadline.set(now + self._limits.body_timeout, idle=False)

    def _on_deadline(self, idle: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if idle:
            if not self._busy and not self._queue:
                transport.close()
        else:
            self._refuse_now(
                refusals.request_timeout("headers" if not self._headers_done else "body")
            )


def _evict_one(connections: dict[HttpProtocol, None]) -> bool:
    """Close the oldest connection that is idle or still sending a request; False if none."""
    for connection in connections:
        if connection.evictable:
            FAILURES.record("REST", "connection closed to make room", "at the connection cap")
            connection.evict()
            return True
    return False
