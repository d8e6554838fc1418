"""Limits that keep slow or hostile HTTP clients from exhausting the process.

OVMS's HTTP server has no read timeouts and no connection cap (``drogon_http_server.cpp``):
1,100 connections that send half a request each take the open-file limit, and then gRPC,
model files and the reloader fail too. These limits close stalled requests and refuse
connections past a cap derived from ``RLIMIT_NOFILE`` (:mod:`ovserve.frontends.descriptors`),
so descriptors always remain for gRPC and the rest of the process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ovserve.config.server_config import ServerConfig
from ovserve.frontends.descriptors import rest_connection_cap
from ovserve.frontends.request_budget import RequestBudget

if TYPE_CHECKING:
    from ovserve.frontends.rest.protocol import ServerState

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_SECONDS: Final = 30.0
"""Time allowed from a request's first byte to the end of its headers."""
DEFAULT_BODY_TIMEOUT_SECONDS: Final = 30.0
"""Longest silence allowed while a request body arrives."""
DEFAULT_KEEP_ALIVE_SECONDS: Final = 60.0
"""Idle time after which a keep-alive connection is closed."""
DEFAULT_WRITE_BUFFER_HIGH: Final = 4 * 1024 * 1024
"""Unsent reply bytes on one connection above which reading from it pauses."""
LINGER_SECONDS: Final = 2.0
"""After a refusal, incoming bytes are dropped this long before closing, so the client reads
the answer instead of a connection reset."""
MAX_AUTO_CONNECTIONS: Final = 100_000
"""The cap when none is computed (unit tests); servers get one from :mod:`..descriptors`."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-connection timeouts, the connection cap and the write high-water mark."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SECONDS
    keep_alive: float = DEFAULT_KEEP_ALIVE_SECONDS
    max_connections: int = MAX_AUTO_CONNECTIONS
    write_buffer_high: int = DEFAULT_WRITE_BUFFER_HIGH
    linger: float = LINGER_SECONDS

    @property
    def write_buffer_low(self) -> int:
        """Reading resumes once unsent bytes drop below this (a quarter of the high mark)."""
        return self.write_buffer_high // 4


def connection_cap(requested: int = 0) -> int:
    """The cap on open HTTP connections: ``requested`` if positive, else from RLIMIT_NOFILE."""
    return rest_connection_cap(requested)


def rest_server_state(config: ServerConfig, budget: RequestBudget) -> ServerState:
    """The shared state of one REST server: the limits from the flags, the process's budget."""
    from ovserve.frontends.rest.protocol import ServerState

    limits = HttpLimits(
        header_timeout=config.rest_header_timeout_seconds,
        body_timeout=config.rest_body_timeout_seconds,
        keep_alive=config.rest_keep_alive_timeout_seconds,
        max_connections=connection_cap(config.rest_max_connections),
        write_buffer_high=config.rest_write_buffer_bytes,
    )
    return ServerState(limits=limits, budget=budget)


def log_limits(state: ServerState) -> None:
    """One INFO line with the limits in force (once the port is bound)."""
    limits = state.limits
    log.info(
        "REST limits: %d connections, headers within %g s, body silences up to %g s, "
        "idle keep-alive %g s, %d request bytes decoded at once",
        limits.max_connections,
        limits.header_timeout,
        limits.body_timeout,
        limits.keep_alive,
        state.budget.capacity,
    )
