"""Back-pressure for one HTTP connection, in both directions.

Reading pauses for any of several reasons (too many pipelined requests queued, replies the
client does not read piling up in the transport's write buffer, a refused request whose body
must not be read, a large body waiting for the request budget) and resumes only when none
holds. Without the write side, a client that
pipelines requests and never reads its answers makes the server buffer replies without limit.
The transport reports its write buffer crossing the high-water mark with ``pause_writing``
and dropping below the low-water mark with ``resume_writing`` (asyncio's protocol contract).
"""

from __future__ import annotations

import asyncio
import enum


class Reason(enum.Enum):
    """Why reading from a connection is paused."""

    QUEUE_FULL = "queue"
    WRITES_BACKED_UP = "writes"
    REFUSED = "refused"
    BUDGET = "budget"


class FlowControl:
    """Pause and resume reading for a set of reasons; track whether writes are backed up."""

    def __init__(self, transport: asyncio.Transport, high: int, low: int) -> None:
        self._transport = transport
        self._reasons: set[Reason] = set()
        self.writes_backed_up = False
        transport.set_write_buffer_limits(high=high, low=low)

    def pause(self, reason: Reason) -> None:
        """Stop reading (if not already stopped) and remember why."""
        if not self._reasons:
            self._transport.pause_reading()
        self._reasons.add(reason)

    def resume(self, reason: Reason) -> None:
        """Drop one reason; read again once none is left."""
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons and not self._transport.is_closing():
            self._transport.resume_reading()

    def writing_paused(self) -> None:
        """The transport's write buffer passed the high-water mark."""
        self.writes_backed_up = True
        self.pause(Reason.WRITES_BACKED_UP)

    def writing_resumed(self) -> None:
        """The write buffer drained below the low-water mark."""
        self.writes_backed_up = False
        self.resume(Reason.WRITES_BACKED_UP)

    def paused_for(self, reason: Reason) -> bool:
        """True while ``reason`` holds reading paused."""
        return reason in self._reasons

    @property
    def paused(self) -> bool:
        """True while reading is paused for any reason."""
        return bool(self._reasons)
