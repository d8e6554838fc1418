"""gRPC calls (the gRPC-over-HTTP/2 protocol) on the streams of :mod:`.connection`: method
look-up, deadlines (``grpc-timeout``), compressed messages, the registered handlers run as tasks,
and the status sent as trailers.

The handlers are grpcio's own ``RpcMethodHandler`` objects, as the generated ``add_*_to_server``
functions register them, so the servicers serve both gRPC stacks unchanged. They get a
:class:`CallContext`: the part of ``grpc.aio.ServicerContext`` a servicer uses.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, NamedTuple, NoReturn

import grpc

from ovserve.errors import OvserveError
from ovserve.frontends.grpc_h2.connection import Http2Connection
from ovserve.frontends.grpc_h2.header_codec import STATUS_200, Headers, literal, status
from ovserve.frontends.grpc_h2.stream import Message, Stream
from ovserve.frontends.request_budget import RequestBudget
from ovserve.frontends.status_mapping import grpc_status

log = logging.getLogger(__name__)

RESPONSE_HEADERS: Final = (
    STATUS_200
    + literal("content-type", "application/grpc")
    + literal("grpc-accept-encoding", "identity,deflate,gzip")
)
OK_TRAILERS: Final = literal("grpc-status", "0")
MAX_STATUS_MESSAGE: Final = 4096
MAX_QUEUED_MESSAGES: Final = 64
"""Request messages of a streaming call waiting for its handler from which the stream's receive
window is no longer reopened: the client waits (as with grpcio) until the handler catches up."""
_TIMEOUT_UNITS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_DECOMPRESSORS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Aborted(Exception):
    """A handler ended its call with a status (``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def trailers(code: grpc.StatusCode, details: str = "") -> bytes:
    """The trailers of a call that ends with ``code``."""
    block = literal("grpc-status", str(code.value[0]))
    if details:
        block += literal("grpc-message", _percent_encode(details[:MAX_STATUS_MESSAGE]))
    return block


def _percent_encode(text: str) -> bytes:
    out = bytearray()
    for byte in text.encode("utf-8", "replace"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def parse_timeout(value: str) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``100m``, ``5S``); None when it is malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not (digits.isascii() and digits.isdigit()) or len(digits) > 8:
        return None
    return int(digits) * unit


class CallContext:
    """What a servicer may ask of its call."""

    def __init__(self, call: _Call) -> None:
        self._call = call
        self._code: grpc.StatusCode | None = None
        self._details = ""

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> NoReturn:
        """End the call with ``code`` and ``details``."""
        raise Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        """The status the call ends with when the handler returns."""
        self._code = code

    def set_details(self, details: str) -> None:
        """The status message the call ends with when the handler returns."""
        self._details = details

    def time_remaining(self) -> float | None:
        """Seconds left before the client's deadline, or None without one."""
        deadline = self._call.deadline
        if deadline is None:
            return None
        return max(0.0, deadline - asyncio.get_running_loop().time())

    def invocation_metadata(self) -> Sequence[tuple[str, str]]:
        """The request's metadata (headers other than the HTTP/2 pseudo-headers)."""
        return tuple((k, v) for k, v in self._call.stream.headers if not k.startswith(":"))

    def peer(self) -> str:
        """The client's address."""
        return self._call.connection.peer

    def cancelled(self) -> bool:
        """Whether the client went away or the deadline passed."""
        return self._call.over

    @property
    def status(self) -> tuple[grpc.StatusCode, str] | None:
        """The status set with ``set_code``, if not OK."""
        if self._code is None or self._code is grpc.StatusCode.OK:
            return None
        return self._code, self._details


class _Call:
    """What unary and streaming calls share: the stream, deadline, task and ending."""

    def __init__(
        self,
        connection: Http2Connection,
        stream: Stream,
        handler: grpc.RpcMethodHandler,
        *,
        deadline: float | None,
        encoding: str,
        tasks: set[asyncio.Task[None]],
        budget: RequestBudget,
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.handler = handler
        self.deadline = deadline
        self.over = False
        self._encoding = encoding
        self._tasks = tasks
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._budget = budget
        self._cost = 0
        """Bytes this call holds of the request budget."""
        self._admission: asyncio.Task[None] | None = None
        self.context = CallContext(self)
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def admit(self, size: int) -> bool:
        """A large message takes its size from the request budget before it is read (as a
        REST body does): at once when free, else the stream waits in line; past the budget's
        wait the call ends with RESOURCE_EXHAUSTED."""
        cost = self._budget.cost(size)
        if self._budget.try_take(cost):
            self._cost += cost
            return True
        self._admission = asyncio.get_running_loop().create_task(self._wait_for(cost))
        return False

    async def _wait_for(self, cost: int) -> None:
        try:
            await self._budget.take(cost)
        except OvserveError as busy:
            self.finish(grpc_status(busy.code), busy.text)
            return
        if self.over:
            self._budget.give_back(cost)
            return
        self._cost += cost
        self.connection.admitted(self.stream)
        self.admitted()

    def admitted(self) -> None:
        """The message that waited for memory may be read (and, once whole, run)."""

    @property
    def waiting(self) -> bool:
        """Whether a message of this call waits for memory."""
        return self._admission is not None and not self._admission.done()

    def too_large(self, size: int) -> None:
        """A request message over the limit ends the call (the rest of it is not read)."""
        self.finish(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Request is larger than the configured limit - message of {size} bytes; "
            f"the limit is {self.stream_limit} bytes",
        )

    def unaffordable(self, size: int) -> None:
        """No memory for the request message: the call ends, the server goes on."""
        self.finish(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"Cannot allocate {size} bytes for the request message now; retry later",
        )

    @property
    def stream_limit(self) -> int:
        """The largest request message taken."""
        return self.connection.max_message_bytes

    def reset(self) -> None:
        """The client went away: stop the handler."""
        self.over = True
        self._stop()

    def _expire(self) -> None:
        self._timer = None
        if not self.over:
            self.finish(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admission is not None and not self._admission.done():
            self._admission.cancel()
        cost, self._cost = self._cost, 0
        self._budget.give_back(cost)
        task = self._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def start(self, work: Any) -> None:
        """Run ``work`` (the handler's coroutine) as this call's task."""
        task = asyncio.get_running_loop().create_task(work)
        self._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _conclude(self) -> bool:
        """Mark the call over and let go of what it holds; False if it already was."""
        if self.over:
            return False
        self.over = True
        self._stop()
        return True

    def finish(self, code: grpc.StatusCode, details: str = "") -> None:
        """End the call with a status (and stop the handler if it still runs)."""
        if not self._conclude():
            return
        self.connection.send_trailers(
            self.stream, trailers(code, details), headers=RESPONSE_HEADERS
        )

    def decode(self, data: Message, compressed: bool) -> bytes | Message | None:
        """The message, decompressed if it is; None (and the call ended) if it cannot be."""
        if not compressed:
            return data
        wbits = _DECOMPRESSORS.get(self._encoding)
        if wbits is None:
            self.finish(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Compression algorithm {self._encoding!r} is not supported",
            )
            return None
        decompressor = zlib.decompressobj(wbits)
        try:
            plain = decompressor.decompress(data, self.stream_limit + 1)
        except zlib.error as error:
            self.finish(grpc.StatusCode.INTERNAL, f"Could not decompress the message: {error}")
            return None
        if len(plain) > self.stream_limit:
            self.too_large(len(plain))
            return None
        return plain

    def ended(self, response_error: BaseException | None) -> None:
        """Map how the handler ended to the call's status."""
        if isinstance(response_error, Aborted):
            self.finish(response_error.code, response_error.details)
        elif response_error is not None:
            log.error(
                "gRPC handler failed with an unexpected error",
                exc_info=(type(response_error), response_error, response_error.__traceback__),
            )
            self.finish(grpc.StatusCode.UNKNOWN, "Unexpected error in the method handler")
        else:
            status_set = self.context.status
            if status_set is not None:
                self.finish(*status_set)


class UnaryCall(_Call):
    """One request message, one reply."""

    _request: bytes | Message | None = None
    _ended = False

    def message(self, data: Message, compressed: bool) -> None:
        """Keep the request; a second one is a protocol error."""
        if self.over:
            return
        if self._request is not None:
            self.finish(grpc.StatusCode.UNIMPLEMENTED, "A unary call carried two messages")
            return
        self._request = self.decode(data, compressed)

    def end(self) -> None:
        """The request is complete: run the handler (once its memory is granted)."""
        if self.over:
            return
        if self._request is None:
            self.finish(grpc.StatusCode.INTERNAL, "The call carried no request message")
            return
        if self.waiting:
            self._ended = True
            return
        self.start(self._run(self._request))

    def admitted(self) -> None:
        """Run the handler now if the request was complete before its memory was granted."""
        if self._ended and not self.over and self._request is not None:
            self.start(self._run(self._request))

    async def _run(self, data: bytes | Message) -> None:
        handler = self.handler
        try:
            request = handler.request_deserializer(data) if handler.request_deserializer else data
            response = await handler.unary_unary(request, self.context)
            if self.context.status is not None:
                self.ended(None)
                return
            payload = (
                handler.response_serializer(response) if handler.response_serializer else response
            )
        except asyncio.CancelledError:
            return
        except Exception as error:  # every failure becomes the call's status
            self.ended(error)
            return
        if self._conclude():
            self.connection.send_unary(self.stream, RESPONSE_HEADERS, payload, OK_TRAILERS)


class StreamCall(_Call):
    """Request and reply messages both streamed (``ModelStreamInfer``).

    Its messages do not take from the request budget: the stream's window, held while more than
    ``MAX_QUEUED_MESSAGES`` wait, bounds what it holds.
    """

    def admit(self, size: int) -> bool:
        """Always at once (see the class)."""
        return True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: asyncio.Queue[bytes | Message | None] = asyncio.Queue()
        self.start(self._run())

    def message(self, data: Message, compressed: bool) -> None:
        """Queue a request for the handler."""
        if self.over:
            return
        plain = self.decode(data, compressed)
        if plain is not None:
            self._queue.put_nowait(plain)
            if self._queue.qsize() >= MAX_QUEUED_MESSAGES:
                self.stream.hold_window = True

    def end(self) -> None:
        """No more requests."""
        self._queue.put_nowait(None)

    async def _requests(self) -> AsyncIterator[Any]:
        deserialize = self.handler.request_deserializer
        while True:
            data = await self._queue.get()
            if self.stream.hold_window and self._queue.qsize() < MAX_QUEUED_MESSAGES // 2:
                self.connection.open_window(self.stream)
            if data is None:
                return
            yield deserialize(data) if deserialize else data

    async def _run(self) -> None:
        handler = self.handler
        serialize = handler.response_serializer
        self.connection.send_headers(self.stream, RESPONSE_HEADERS)
        try:
            async for response in handler.stream_stream(self._requests(), self.context):
                if self.over:
                    return
                self.connection.send_message(
                    self.stream, serialize(response) if serialize else response
                )
                await self.connection.drained(self.stream)
        except asyncio.CancelledError:
            return
        except Exception as error:  # every failure becomes the call's status
            self.ended(error)
            return
        self.ended(None)
        if self._conclude():
            self.connection.send_trailers(self.stream, OK_TRAILERS)


def refuse(
    connection: Http2Connection,
    stream: Stream,
    code: grpc.StatusCode,
    details: str,
    http: int = 200,
) -> None:
    """Answer a call that will not run with its status alone (trailers only)."""
    head = (STATUS_200 if http == 200 else status(http)) + literal(
        "content-type", "application/grpc"
    )
    connection.send_trailers(stream, trailers(code, details), headers=head)


class _Route(NamedTuple):
    """What a request's headers ask for: a call to start, or the refusal to answer with."""

    kind: type[UnaryCall] | type[StreamCall] | None
    handler: grpc.RpcMethodHandler | None
    timeout: str | None
    encoding: str
    refusal: tuple[grpc.StatusCode, str, int] = (grpc.StatusCode.OK, "", 200)


MAX_ROUTES: Final = 256


class Dispatcher:
    """Starts the call each new stream asks for.

    A client's repeated header blocks decode to the same list (``header_codec`` remembers
    them), so the route read from a list is remembered by the list's identity; each entry holds
    its list, so an identity is not reused while remembered.
    """

    def __init__(
        self, methods: dict[str, grpc.RpcMethodHandler], budget: RequestBudget | None = None
    ) -> None:
        self._methods = methods
        self._budget = budget if budget is not None else RequestBudget(0)
        self._routes: dict[int, tuple[Headers, _Route]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, connection: Http2Connection, stream: Stream) -> None:
        """Look the method up and attach its call to ``stream``."""
        headers = stream.headers
        known = self._routes.get(id(headers))
        if known is not None and known[0] is headers:
            route = known[1]
        else:
            route = self._route(headers)
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[id(headers)] = (headers, route)
        if route.kind is None or route.handler is None:
            refuse(connection, stream, *route.refusal)
            return
        deadline = None
        if route.timeout is not None:
            seconds = parse_timeout(route.timeout)
            if seconds is None:
                refuse(
                    connection,
                    stream,
                    grpc.StatusCode.INTERNAL,
                    f"bad grpc-timeout {route.timeout!r}",
                )
                return
            deadline = asyncio.get_running_loop().time() + seconds
        stream.call = route.kind(
            connection,
            stream,
            route.handler,
            deadline=deadline,
            encoding=route.encoding,
            tasks=self.tasks,
            budget=self._budget,
        )

    def _route(self, headers: Headers) -> _Route:
        head = dict(headers)
        path = head.get(":path", "")
        timeout = head.get("grpc-timeout")
        encoding = head.get("grpc-encoding", "identity")
        if head.get(":method") != "POST":
            return _Route(
                None,
                None,
                timeout,
                encoding,
                (grpc.StatusCode.UNIMPLEMENTED, "gRPC needs POST", 405),
            )
        if not head.get("content-type", "").startswith("application/grpc"):
            refusal = (grpc.StatusCode.UNKNOWN, "not a gRPC content-type", 415)
            return _Route(None, None, timeout, encoding, refusal)
        handler = self._methods.get(path)
        if handler is None:
            refusal = (grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {path}", 200)
            return _Route(None, None, timeout, encoding, refusal)
        if handler.unary_unary is not None:
            return _Route(UnaryCall, handler, timeout, encoding)
        if handler.stream_stream is not None:
            return _Route(StreamCall, handler, timeout, encoding)
        refusal = (grpc.StatusCode.UNIMPLEMENTED, f"{path} is not served", 200)
        return _Route(None, None, timeout, encoding, refusal)
