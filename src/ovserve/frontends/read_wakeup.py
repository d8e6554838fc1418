"""Wake a connection once per large body, not once per TCP segment (``SO_RCVLOWAT``).

While a large request body streams in, the event loop would wake for every few dozen KiB that
arrive. When a compute-bound inference runs on the same core, each wake-up preempts it: on one
core a 602 KB request woke the loop eight times, and the context switches and cold caches cost
about as much CPU as receiving the bytes. A connection that knows how many more bytes a body
needs asks the kernel not to report the socket readable before that many are there (capped), so
the body is read in one or two reads.

Safe by construction: the threshold is only ever a lower bound on bytes the client has promised
to send and may send (the caller caps it by the flow-control credit it granted); Linux still
wakes the reader when its TCP receive window is nearly full; and a timer drops the threshold if
nothing was read for a while (a client that stops mid-body, or is cut off by a reset), so the
connection's other frames and its timeouts are never held back for long.
"""

from __future__ import annotations

import asyncio
import ctypes
import socket
from typing import Any, Final, Protocol

from ovserve.heap import glibc_function

WAKE_MIN_BYTES: Final = 64 * 1024
"""Bodies with less than this still to come are read as they arrive."""
WAKE_MAX_BYTES: Final = 4 * 1024 * 1024
"""The highest threshold asked for: the kernel grows the socket's receive buffer to hold it."""
STALL_SECONDS: Final = 0.05
"""With a threshold set and nothing read for this long, the threshold is dropped."""


class SocketTransport(Protocol):
    """What is asked of a transport (asyncio's and uvloop's have it)."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``socket`` and ``sslcontext``."""

    def is_closing(self) -> bool:
        """Whether it is closed or closing (its descriptor may be gone)."""


class ReadWakeup:
    """The ``SO_RCVLOWAT`` of one connection's socket, raised while a large body is expected."""

    __slots__ = ("_fd", "_level", "_loop", "_timer", "_transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: SocketTransport | None = None
        self._fd = -1
        self._level = 1
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, transport: SocketTransport) -> None:
        """Use ``transport``'s socket, if it is a plain TCP one."""
        # Under TLS the socket carries records, and the TLS layer buffers bytes of its own: byte
        # counts of the body say nothing safe about the socket then.
        if _SETSOCKOPT is None or transport.get_extra_info("sslcontext") is not None:
            return
        sock = transport.get_extra_info("socket")
        if sock is None or sock.type != socket.SOCK_STREAM:
            return
        if sock.family in {socket.AF_INET, socket.AF_INET6}:
            self._transport = transport
            self._fd = sock.fileno()

    def expect(self, body_bytes: int) -> None:
        """At least ``body_bytes`` more are coming and may be sent: wake when they are in.

        Called after every read; 0 (or anything below :data:`WAKE_MIN_BYTES`) wakes on any byte.
        """
        level = min(body_bytes, WAKE_MAX_BYTES) if body_bytes >= WAKE_MIN_BYTES else 1
        if level == self._level or self._transport is None:
            return
        self._set(level)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if level > 1:
            self._timer = self._loop.call_later(STALL_SECONDS, self._stalled)

    def close(self) -> None:
        """The connection is gone: forget the socket and the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._transport = None

    def _stalled(self) -> None:
        # The threshold has stood this long (a read that changes it restarts the timer): the
        # client may have stopped. Wake on any byte again; the next read sets a threshold for
        # what is left.
        self._timer = None
        if self._transport is not None and self._level > 1:
            self._set(1)

    def _set(self, level: int) -> None:
        transport = self._transport
        assert transport is not None
        assert _SETSOCKOPT is not None
        # Straight to the C library on the descriptor: the transport's socket object makes a new
        # socket (and a getsockname call) per option set. A closing transport's descriptor may
        # be closed and reused already: leave it alone.
        if transport.is_closing():
            self._transport = None
            return
        value = ctypes.c_int(level)
        if _SETSOCKOPT(self._fd, _SOL_SOCKET, _SO_RCVLOWAT, ctypes.byref(value), _INT_BYTES):
            self._transport = None  # a platform or socket without it: read as bytes arrive
            return
        self._level = level


_SOL_SOCKET: Final = socket.SOL_SOCKET
_SO_RCVLOWAT: Final = getattr(socket, "SO_RCVLOWAT", 0)
_INT_BYTES: Final = ctypes.sizeof(ctypes.c_int)
_SETSOCKOPT: Final = (
    glibc_function(
        "setsockopt", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint
    )
    if _SO_RCVLOWAT
    else None
)
