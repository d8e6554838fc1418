"""Failed requests in the log without flooding it: DEBUG per failure, a WARNING summary.

Logging every failed request at INFO made 105,500 bad requests into 16.7 MB of log. Each
failure (gRPC and REST alike) is one DEBUG line; at most every ``interval`` seconds one WARNING
line counts the failures since the last summary by transport and kind, e.g.
``Failed requests in the last 10 s: 5210 gRPC INVALID_ARGUMENT, 3 REST 413 ...``.
It also keeps grpcio's tracebacks for client-side events (a deadline that expired, a client
that went away) out of the log: those are the client's doing, counted like other failures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Final

log = logging.getLogger("ovserve.requests")

SUMMARY_SECONDS: Final = 10.0
"""Shortest time between two WARNING summaries."""


class FailureLog:
    """Counts failures by (transport, kind) and summarizes them at most every ``interval``."""

    def __init__(
        self, interval: float = SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._counts: Counter[tuple[str, str]] = Counter()
        self._since = clock()
        self._scheduled = False

    def record(self, transport: str, kind: str, detail: str) -> None:
        """One failed request: a DEBUG line now, a count for the next summary."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s request failed: %s%s", transport, kind, f" ({detail})" if detail else "")
        self._counts[(transport, kind)] += 1
        if self._clock() - self._since >= self.interval:
            self.flush()
        elif not self._scheduled:
            self._schedule()

    def flush(self) -> None:
        """Log the summary of the failures counted so far (nothing when there are none)."""
        now = self._clock()
        if self._counts:
            parts = ", ".join(
                f"{count} {transport} {kind}"
                for (transport, kind), count in self._counts.most_common()
            )
            log.warning("Failed requests in the last %.0f s: %s", now - self._since, parts)
            self._counts.clear()
        self._since = now

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._scheduled = True
        delay = max(0.0, self.interval - (self._clock() - self._since))
        loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._scheduled = False
        self.flush()


FAILURES: Final = FailureLog()
"""The process's failure log: both transports record into it."""


class ClientGoneFilter(logging.Filter):
    """Drops grpcio's tracebacks for calls the client abandoned; counts them instead.

    grpc.aio logs an ``ExecuteBatchError`` traceback when it cannot send the answer to a
    call whose deadline expired or whose client disconnected.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for abandoned-call errors; True for everything else."""
        error = record.exc_info[1] if record.exc_info else None
        name = type(error).__name__ if error is not None else ""
        if name in ("ExecuteBatchError", "UsageError") or "ExecuteBatchError" in str(record.msg):
            FAILURES.record("gRPC", "client gone before the answer", str(error or record.msg))
            return False
        return True


def quiet_client_errors() -> None:
    """Install :class:`ClientGoneFilter` on grpcio's loggers (idempotent)."""
    for name in ("grpc._cython.cygrpc", "grpc.aio", "grpc._server"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientGoneFilter) for f in logger.filters):
            logger.addFilter(ClientGoneFilter())
