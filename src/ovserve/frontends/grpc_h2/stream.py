"""One HTTP/2 stream of a gRPC call: its request messages as they arrive, its replies as they wait
for the client's flow-control window.

A request message is length-prefixed (1 flag byte, 4 length bytes). Once the prefix is in, the
message gets one buffer of its size and the connection reads the rest of it straight into that
buffer where it can (:meth:`Stream.receive_view`), so a large tensor is copied once, by the kernel.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from ovserve.frontends.grpc_h2.header_codec import Headers

PREFIX_BYTES: Final = 5
UNZEROED_MIN_BYTES: Final = 64 * 1024
"""From this size a message's buffer is not zeroed first (every byte is written by the read)."""

Message = bytearray | memoryview
"""A request message's bytes: a bytearray, or for large ones a view of an uninitialised array."""


class Call(Protocol):
    """What a stream tells the gRPC call it carries."""

    def message(self, data: Message, compressed: bool) -> None:
        """A whole request message arrived."""

    def admit(self, size: int) -> bool:
        """A message of ``size`` bytes begins: True if it may be read at once; False if it waits
        for memory (the call then calls ``Http2Connection.admitted`` or ends)."""

    def too_large(self, size: int) -> None:
        """A request message declared ``size`` bytes, over the limit; nothing more is read."""

    def unaffordable(self, size: int) -> None:
        """No memory for a request message of ``size`` bytes; nothing more is read."""

    def end(self) -> None:
        """The client finished sending (END_STREAM)."""

    def reset(self) -> None:
        """The stream was reset or its connection was lost: nobody will read an answer."""


class Stream:
    """Receive and send state of one stream."""

    __slots__ = (
        "_body",
        "_compressed",
        "_filled",
        "_limit",
        "_prefix",
        "call",
        "discarding",
        "headers",
        "held",
        "hold_window",
        "id",
        "outbound",
        "outbound_bytes",
        "receive_unacked",
        "remote_ended",
        "send_window",
        "sent_headers",
        "trailers",
        "waiting",
    )

    def __init__(self, stream_id: int, headers: Headers, send_window: int, limit: int) -> None:
        self.id = stream_id
        self.headers = headers
        self.call: Call | None = None
        self.send_window = send_window
        self.receive_unacked = 0
        self.hold_window = False
        """Set while the call cannot keep up: its receive window is not reopened."""
        self.waiting = False
        """Set while the message being read waits for memory (the request budget): neither its
        stream's window nor the connection's is reopened for its bytes."""
        self.held = 0
        """Bytes received while ``waiting``, not yet given back to the connection's window."""
        self.remote_ended = False
        self.discarding = False
        self.sent_headers = False
        self.outbound: deque[memoryview] = deque()
        self.outbound_bytes = 0
        self.trailers: bytes | None = None
        self._limit = limit
        self._prefix = bytearray()
        self._body: Message | None = None
        self._filled = 0
        self._compressed = False

    def receive(self, data: memoryview) -> None:
        """Take ``data`` (DATA payload bytes, padding removed) into the messages being read."""
        body = self._body
        if body is not None and not self.discarding:  # the middle of a message: one copy
            filled = self._filled
            if filled + len(data) < len(body):
                body[filled : filled + len(data)] = data
                self._filled = filled + len(data)
                return
        at = 0
        end = len(data)
        while at < end and not self.discarding:
            body = self._body
            if body is None:
                take = min(PREFIX_BYTES - len(self._prefix), end - at)
                self._prefix += data[at : at + take]
                at += take
                if len(self._prefix) == PREFIX_BYTES:
                    self._start_message()
                continue
            take = min(len(body) - self._filled, end - at)
            body[self._filled : self._filled + take] = data[at : at + take]
            at += take
            self._filled += take
            if self._filled == len(body):
                self._finish_message()

    def receive_rows(self, rows: npt.NDArray[np.uint8]) -> None:
        """Take the payloads of several DATA frames (one per row) that all fall inside the
        message being read (see :attr:`message_left`)."""
        body = self._body
        assert body is not None
        filled = self._filled
        np.frombuffer(body, np.uint8, rows.size, filled).reshape(rows.shape)[...] = rows
        self._filled = filled + rows.size
        if self._filled == len(body):
            self._finish_message()

    def receive_view(self, most: int) -> memoryview | None:
        """Where the next bytes of the message being read go (at most ``most``), if one is."""
        body = self._body
        if body is None or self.discarding:
            return None
        left = min(len(body) - self._filled, most)
        return memoryview(body)[self._filled : self._filled + left]

    @property
    def message_left(self) -> int:
        """Bytes of the message being read still to come (0 between messages)."""
        body = self._body
        return 0 if body is None or self.discarding else len(body) - self._filled

    def received_into_view(self, count: int) -> None:
        """``count`` bytes were read into the view :meth:`receive_view` gave."""
        self._filled += count
        if self._body is not None and self._filled == len(self._body):
            self._finish_message()

    def _start_message(self) -> None:
        prefix = self._prefix
        self._compressed = prefix[0] == 1
        size = int.from_bytes(prefix[1:5], "big")
        self._prefix = bytearray()
        if size > self._limit:
            self.discarding = True
            if self.call is not None:
                self.call.too_large(size)
            return
        if self.call is not None and not self.call.admit(size):
            self.waiting = True
        try:
            self._body = (
                bytearray(size) if size < UNZEROED_MIN_BYTES else np.empty(size, np.uint8).data
            )
        except MemoryError:
            self.discarding = True
            if self.call is not None:
                self.call.unaffordable(size)
            return
        self._filled = 0
        if size == 0:
            self._finish_message()

    def _finish_message(self) -> None:
        body = self._body
        self._body = None
        if body is not None and self.call is not None:
            self.call.message(body, self._compressed)
