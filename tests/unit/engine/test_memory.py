"""Bounded memory levers: the runtime-cache default, oneDNN's cache, malloc_trim, the idle timer."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from ovserve import heap
from ovserve.engine import memory


def test_cpu_models_get_the_runtime_cache_cap_unless_plugin_config_sets_it() -> None:
    capped = memory.with_runtime_cache_cap({"PERFORMANCE_HINT": "LATENCY"}, "CPU")
    assert capped == {"PERFORMANCE_HINT": "LATENCY", "CPU_RUNTIME_CACHE_CAPACITY": 64}
    own = {"CPU_RUNTIME_CACHE_CAPACITY": 5000}
    assert memory.with_runtime_cache_cap(own, "CPU") == own
    assert memory.with_runtime_cache_cap({}, "GPU") == {}


def test_onednn_cache_is_capped_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(memory.ONEDNN_CACHE_VARIABLE, raising=False)
    memory.bound_onednn_cache()
    assert os.environ[memory.ONEDNN_CACHE_VARIABLE] == "64"
    monkeypatch.setenv(memory.ONEDNN_CACHE_VARIABLE, "7")
    memory.bound_onednn_cache()
    assert os.environ[memory.ONEDNN_CACHE_VARIABLE] == "7"


def test_malloc_trim_runs_on_glibc() -> None:
    assert heap.malloc_trim() is True


def test_background_threads_run_at_lower_priority() -> None:
    seen: list[int] = []

    def body() -> None:
        memory.lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [min(19, memory.BACKGROUND_NICENESS + os.getpriority(os.PRIO_PROCESS, 0))]


def test_idle_timer_fires_once_per_busy_period_and_cancels() -> None:
    fired: list[float] = []

    async def release() -> None:
        fired.append(asyncio.get_running_loop().time())

    async def until_fired(count: int) -> None:
        deadline = asyncio.get_running_loop().time() + 5
        while len(fired) < count:
            assert asyncio.get_running_loop().time() < deadline, "the timer never fired"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        timer = memory.IdleTimer(0.05, release, busy=lambda: False)
        timer.touch()
        last_touch = asyncio.get_running_loop().time()
        await until_fired(1)
        assert fired[0] - last_touch >= 0.045  # not before the idle delay
        await asyncio.sleep(0.2)
        assert len(fired) == 1  # once per busy period
        timer.touch()
        await until_fired(2)
        timer.touch()
        timer.cancel()
        await asyncio.sleep(0.2)
        assert len(fired) == 2  # cancelled

    asyncio.run(scenario())
