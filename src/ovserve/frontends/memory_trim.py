"""Give freed heap memory back to the system after large requests.

glibc keeps freed memory in its arenas: after eight parallel 15 MB JSON requests the process
stayed at 1.2 GiB. ``malloc_trim(0)`` returns the free pages; it costs a few milliseconds on a
large heap, so it runs at most once per ``MIN_INTERVAL``, and only once large requests have
paused for ``QUIET`` seconds. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from ovserve.heap import malloc_trim_function

log = logging.getLogger(__name__)

MIN_INTERVAL: Final = 1.0
"""Seconds between two trims."""
QUIET: Final = 0.05
"""Seconds without a large request before the trim: under steady load of large requests the
freed buffers are what the next requests reuse, and trimming them away would only make the
kernel fault and zero them in again."""


_MALLOC_TRIM: Final = malloc_trim_function()


class Trimmer:
    """Schedules ``malloc_trim`` on the running loop once large requests pause, rate-limited."""

    def __init__(self, trim: Callable[[int], int] | None = _MALLOC_TRIM) -> None:
        self._trim = trim
        self._last = 0.0
        self._asked = 0.0
        self._scheduled = False
        self.trims = 0

    def soon(self) -> None:
        """Trim once no call has come for ``QUIET`` seconds (and ``MIN_INTERVAL`` since the last
        trim)."""
        if self._trim is None:
            return
        self._asked = time.monotonic()
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._scheduled = True
        loop.call_later(self._wait(self._asked), self._due)

    def postpone(self) -> None:
        """A large request begins: a trim due now would only take away the memory it is about
        to use (and fault it back in), so the quiet period starts again."""
        self._asked = time.monotonic()

    def _wait(self, now: float) -> float:
        return max(self._asked + QUIET, self._last + MIN_INTERVAL) - now

    def _due(self) -> None:
        wait = self._wait(time.monotonic())
        if wait > 0:
            asyncio.get_running_loop().call_later(wait, self._due)
            return
        self.now()

    def now(self) -> None:
        """Trim at once."""
        self._scheduled = False
        if self._trim is None:
            return
        self._last = time.monotonic()
        self._trim(0)
        self.trims += 1
