"""The trimmer: memory goes back to the system once large requests pause, not during a burst."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ovserve.frontends import memory_trim
from ovserve.frontends.memory_trim import Trimmer


def test_no_trim_while_large_requests_keep_coming_and_one_after_they_pause() -> None:
    trims: list[float] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        trimmer = Trimmer(_recorder(trims, loop))
        started = loop.time()
        last_ask = started
        while loop.time() - started < 4 * memory_trim.QUIET:  # a steady burst
            trimmer.soon()
            last_ask = loop.time()
            await asyncio.sleep(memory_trim.QUIET / 5)
        assert trims == []
        await asyncio.sleep(3 * memory_trim.QUIET)
        assert len(trims) == 1
        assert trims[0] >= last_ask + memory_trim.QUIET * 0.9

    asyncio.run(body())


def test_trims_are_at_least_min_interval_apart() -> None:
    trims: list[float] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        trimmer = Trimmer(_recorder(trims, loop))
        trimmer.soon()
        await asyncio.sleep(2 * memory_trim.QUIET)
        trimmer.soon()
        await asyncio.sleep(2 * memory_trim.QUIET)
        assert len(trims) == 1  # the second waits for MIN_INTERVAL

    asyncio.run(body())


def _recorder(trims: list[float], loop: asyncio.AbstractEventLoop) -> Callable[[int], int]:
    def trim(pad: int) -> int:
        trims.append(loop.time())
        return 1

    return trim
