"""One lazy timer per HTTP connection for its idle, header and body deadlines.

Re-arming a timer for every request costs a timer handle each time; instead a later deadline
leaves the timer where it is (it re-schedules itself when it fires early) and only an earlier
one re-arms it. A request that arrives whole touches no timer at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Deadline:
    """The connection's next deadline; ``on_expiry(idle)`` runs when it passes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_expiry: Callable[[bool], None]):
        self._loop = loop
        self._on_expiry = on_expiry
        self.when: float | None = None
        self.idle = True
        """True for the keep-alive deadline (close quietly), False for a request's (408)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    def set(self, when: float, idle: bool) -> None:
        """Expire at loop time ``when``."""
        self.when = when
        self.idle = idle
        if self._timer is None or when < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_when = when
            self._timer = self._loop.call_at(when, self._fire)

    def clear(self) -> None:
        """No deadline (the connection is busy answering, or refused)."""
        self.when = None

    def cancel(self) -> None:
        """Stop the timer for good (the connection is gone)."""
        self.when = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        when = self.when
        if when is None:
            return
        if when > self._loop.time():
            self._timer_when = when
            self._timer = self._loop.call_at(when, self._fire)
        else:
            self._on_expiry(self.idle)
