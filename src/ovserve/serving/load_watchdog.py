"""A watchdog for slow or stuck model loads: says which versions still load, and in which step.

A server whose start never ends is the worst failure to diagnose: no error, no log line, a pod
that is never ready. Every load registers here and its engine reports each step as it starts
(read, reshape, probe, compile; ``waiting`` until a load thread is free). When the oldest load
has run longer than the threshold, one WARNING line lists every load in progress with its step
and age; it repeats at doubling intervals (10 s, 20 s, 40 s, ...) while loads keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ovserve.engine.base import LoadStep

log = logging.getLogger(__name__)

THRESHOLD_SECONDS: Final = 10.0
"""A load running longer than this is reported (80 small models start in a few seconds)."""

WAITING: Final = "waiting for a load thread"


@dataclass
class LoadProgress:
    """One version being loaded: its current step and when things started."""

    name: str
    version: int
    started: float
    step: str = WAITING
    step_started: float = field(default=0.0)


class LoadTracker:
    """The loads in progress. Steps may be reported from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loads: dict[int, LoadProgress] = {}
        self._next_id = 0

    @contextlib.contextmanager
    def track(self, name: str, version: int) -> Iterator[LoadStep]:
        """Register a load for the duration of the block; yield its step listener."""
        now = self._clock()
        progress = LoadProgress(name, version, now, step_started=now)
        key = self._next_id
        self._next_id += 1
        self._loads[key] = progress

        def on_step(step: str) -> None:
            # Called from the load's worker thread: two attribute writes, no shared structure.
            progress.step_started = self._clock()
            progress.step = step

        try:
            yield on_step
        finally:
            del self._loads[key]

    def in_progress(self) -> list[LoadProgress]:
        """Loads now running, oldest first."""
        return sorted(self._loads.values(), key=lambda load: load.started)

    def now(self) -> float:
        """The tracker's clock."""
        return self._clock()


def describe(loads: list[LoadProgress], now: float) -> str:
    """``m version 1 (compile for 8.2 s, loading for 9.9 s)``, comma-separated."""
    return ", ".join(
        f"{load.name} version {load.version} ({load.step} for {now - load.step_started:.1f} s, "
        f"loading for {now - load.started:.1f} s)"
        for load in loads
    )


class LoadWatchdog:
    """Logs the loads in progress when one has run longer than ``threshold`` seconds."""

    def __init__(self, tracker: LoadTracker, threshold: float = THRESHOLD_SECONDS) -> None:
        self._tracker = tracker
        self._threshold = threshold
        self._next_report = threshold
        self._task: asyncio.Task[None] | None = None

    def check(self) -> str | None:
        """Log (and return) the report if it is due; None otherwise."""
        loads = self._tracker.in_progress()
        if not loads:
            self._next_report = self._threshold
            return None
        now = self._tracker.now()
        oldest = now - loads[0].started
        if oldest < self._next_report:
            return None
        while self._next_report <= oldest:
            self._next_report *= 2
        report = (
            f"Model loading is slow: {len(loads)} still loading after {oldest:.0f} s: "
            f"{describe(loads, now)}"
        )
        log.warning("%s", report)
        return report

    def start(self) -> None:
        """Check periodically until stopped."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="load-watchdog")

    async def stop(self) -> None:
        """Stop checking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        period = max(self._threshold / 10, 0.01)
        while True:
            await asyncio.sleep(period)
            self.check()
