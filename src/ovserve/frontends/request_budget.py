"""The process's budget for request bytes being received, parsed and decoded at once, shared by
the REST server and the native gRPC transport (``--rest_memory_quota`` bytes in all).

Large JSON bodies cost several times their size while they are parsed (a 15 MB body peaked near
95 MiB), and eight of them in parallel held close to 1 GiB that the allocator kept. A request
takes its body's size from the budget before its body is read and gives it back once it is
answered; past the budget it waits in line, and after ``wait_seconds`` it is refused with
RESOURCE_EXHAUSTED (HTTP 503). A request larger than the whole budget runs alone. When the
last large request is answered and no other begins for a while, freed memory is given back to
the system (``malloc_trim``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

from ovserve.config.server_config import ServerConfig
from ovserve.errors import OvserveError, ServerBusy
from ovserve.frontends.memory_trim import Trimmer

SMALL_REQUEST_BYTES: Final = 64 * 1024
"""Bodies below this size never wait: they cannot exhaust memory and keep the fast path."""


def budget_from(config: ServerConfig) -> RequestBudget:
    """The process's budget from the flags: ``--rest_memory_quota`` bytes, waits up to the body
    timeout. Made once and handed to every transport, with its :class:`Trimmer`."""
    return RequestBudget(config.rest_memory_quota, wait_seconds=config.rest_body_timeout_seconds)


class RequestBudget:
    """Bytes granted first come, first served; ``capacity`` 0 means unlimited."""

    def __init__(
        self, capacity: int, wait_seconds: float = 30.0, trimmer: Trimmer | None = None
    ) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.trimmer = trimmer if trimmer is not None else Trimmer()
        """Gives freed memory back once large requests pause (the process's one trimmer)."""
        self.in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def cost(self, size: int) -> int:
        """What a body of ``size`` bytes takes from the budget (0 when it need not wait)."""
        if self.capacity <= 0 or size < SMALL_REQUEST_BYTES:
            return 0
        return min(size, self.capacity)

    def try_take(self, cost: int) -> bool:
        """Take ``cost`` bytes now if they are free and nobody waits before us."""
        if cost == 0:
            return True
        if self._waiters or self.in_use + cost > self.capacity:
            return False
        self.in_use += cost
        self.trimmer.postpone()
        return True

    async def take(self, cost: int) -> None:
        """Wait in line for ``cost`` bytes; raise ServerBusy after ``wait_seconds``."""
        if self.try_take(cost):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (cost, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.wait_seconds)
        except TimeoutError:
            if future.done() and not future.cancelled():
                return  # granted at the last moment: keep it
            self._forget(entry)
            raise self.busy() from None
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.give_back(cost)
            else:
                self._forget(entry)
            raise

    def give_back(self, cost: int) -> None:
        """Return bytes and wake the waiters they now fit."""
        if cost == 0:
            return
        self.in_use -= cost
        self._grant()
        if self.in_use == 0:
            # The large bodies and what was decoded from them are freed by now.
            self.trimmer.soon()

    def busy(self) -> OvserveError:
        """The error for a request that waited too long."""
        return ServerBusy(
            f"request bodies being decoded hold the memory quota of {self.capacity} bytes"
        )

    def _forget(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(entry)
        entry[1].cancel()
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            cost, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.in_use + cost > self.capacity:
                return
            self._waiters.popleft()
            self.in_use += cost
            self.trimmer.postpone()
            future.set_result(None)
