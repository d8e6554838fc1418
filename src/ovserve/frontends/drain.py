"""The graceful part of a front-end's stop, shared by REST and the native gRPC transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

POLL_SECONDS: Final = 0.05
"""Longest wait between two looks at whether the front-end is still busy."""


async def drain(
    tasks: Callable[[], set[asyncio.Task[Any]]], busy: Callable[[], bool], grace: float
) -> None:
    """Wait, at most ``grace`` seconds, until ``busy()`` is false: waking as ``tasks()`` end,
    or every POLL_SECONDS while none runs (a request still arriving is not a task yet). Then
    cancel the tasks still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while busy() and (left := deadline - loop.time()) > 0:
        running = tasks()
        if running:
            await asyncio.wait(running, timeout=min(left, POLL_SECONDS))
        else:
            await asyncio.sleep(min(left, POLL_SECONDS))
    for task in tasks():
        task.cancel()
