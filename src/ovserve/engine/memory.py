"""Bounded memory for dynamic models: a runtime-cache cap, and memory given back when idle.

OpenVINO's CPU plugin keeps per-shape state in a runtime cache of 5,000 entries by default,
about 0.12 MiB per distinct input shape (+231 MiB over 2,000 shapes, measured). A large input
(one 1920x1080 request on the face model: RSS 255 -> 747 MiB) leaves its intermediate buffers
allocated for good, and glibc keeps freed heap pages mapped. So: CPU models are compiled with
a smaller cache unless plugin_config says otherwise, and a model that stays idle gives its
buffers back (``CompiledModel.release_memory()``) and asks glibc to return free pages to the
system (``malloc_trim(0)``). oneDNN's own kernel cache, shared by every model in the process,
is capped the same way (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, unless the environment sets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Final

log = logging.getLogger(__name__)

RUNTIME_CACHE_KEY: Final = "CPU_RUNTIME_CACHE_CAPACITY"
DEFAULT_RUNTIME_CACHE_CAPACITY: Final = 64
"""Measured (bench/variants.md): 2,000 distinct shapes raise RSS by ~+40 MiB with 64 entries
against ~+230 MiB with OpenVINO's 5,000, at the same speed for a repeated shape."""


ONEDNN_CACHE_VARIABLE: Final = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
DEFAULT_ONEDNN_CACHE_CAPACITY: Final = 64
"""oneDNN keeps JIT kernels for 1,024 shapes by default, process-wide: measured on a
MobileNetV2 over 1,000 distinct shapes, RSS +79 MiB with that, +22 MiB with 64 (the CPU
plugin's own runtime cache still holds the executors of recent shapes)."""


def bound_onednn_cache() -> None:
    """Cap oneDNN's primitive cache unless the environment already sets it.

    oneDNN reads the variable when the cache is first used, after ``import openvino``; so this
    runs when the engine starts, before any model compiles.
    """
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(DEFAULT_ONEDNN_CACHE_CAPACITY))


def with_runtime_cache_cap(properties: dict[str, Any], device: str) -> dict[str, Any]:
    """``properties`` plus the default runtime-cache capacity on CPU, unless already set."""
    if device != "CPU" or RUNTIME_CACHE_KEY in properties:
        return properties
    return {**properties, RUNTIME_CACHE_KEY: DEFAULT_RUNTIME_CACHE_CAPACITY}


BACKGROUND_NICENESS: Final = 10


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to request threads (Linux: per-thread nice).

    Variant builds run on such a thread, so compiling does not slow the requests that the
    dynamic model serves meanwhile more than it must.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


class IdleTimer:
    """Calls ``release`` once a model has had no request for ``delay`` seconds.

    Armed by each finished request (``touch``); fires once per busy period. Only the event
    loop thread touches it; ``cancel`` may come from any thread.
    """

    def __init__(
        self,
        delay: float,
        release: Callable[[], Coroutine[Any, Any, object]],
        busy: Callable[[], bool],
    ) -> None:
        self._delay = delay
        self._release = release
        self._busy = busy
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._task: asyncio.Task[object] | None = None
        """The release under way (kept so it is not garbage-collected mid-run)."""

    def touch(self) -> None:
        """A request just finished: (re)start the idle countdown."""
        loop = self._loop = asyncio.get_running_loop()
        self._last = loop.time()
        if self._handle is None:
            self._handle = loop.call_at(self._last + self._delay, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._handle = None
        now = self._loop.time()
        due = self._last + self._delay
        if now < due or self._busy():
            self._handle = self._loop.call_at(max(due, now + self._delay / 4), self._fire)
            return
        self._task = self._loop.create_task(self._release())

    def cancel(self) -> None:
        """Stop the countdown (from any thread)."""
        loop, handle = self._loop, self._handle
        if loop is None or handle is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(handle.cancel)
