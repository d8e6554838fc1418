"""The load watchdog: a load held up on purpose is reported with its model, version and step."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.serving.load_watchdog import LoadTracker, LoadWatchdog
from ovserve.serving.model_manager import ModelManager

from _fake_engine import FakeEngine

RepoFactory = Callable[..., ModelConfig]


def test_a_held_up_load_is_logged_with_its_step(
    engine: FakeEngine, make_repo: RepoFactory, caplog: pytest.LogCaptureFixture
) -> None:
    engine.hold = threading.Event()
    config = make_repo([1], name="stuck")

    async def scenario() -> None:
        manager = ModelManager(engine)
        watchdog = LoadWatchdog(manager.tracker, threshold=0.05)
        watchdog.start()
        load = asyncio.create_task(manager.add_model(config))
        try:
            for _ in range(500):
                if "still loading" in caplog.text:
                    break
                await asyncio.sleep(0.01)
        finally:
            engine.hold.set()  # type: ignore[union-attr]
            await load
            await watchdog.stop()
        assert manager.instance("stuck").version == 1

    with caplog.at_level(logging.WARNING, "ovserve.serving.load_watchdog"):
        asyncio.run(scenario())
    (line,) = [r.getMessage() for r in caplog.records if "still loading" in r.getMessage()]
    assert "Model loading is slow: 1 still loading after 0 s: stuck version 1 (compile for" in line


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_repeat_at_doubling_intervals_and_reset_when_idle() -> None:
    clock = FakeClock()
    tracker = LoadTracker(clock)
    watchdog = LoadWatchdog(tracker, threshold=10.0)
    reports = []
    with tracker.track("a", 1) as step_a, tracker.track("b", 2):
        step_a("read")
        clock.now += 4
        step_a("compile")
        for _ in range(50):
            clock.now += 1
            reports.append(watchdog.check())
        made = [report for report in reports if report]
        assert len(made) == 3  # at 10, 20 and 40 s
        assert made[0] == (
            "Model loading is slow: 2 still loading after 10 s: "
            "a version 1 (compile for 6.0 s, loading for 10.0 s), "
            "b version 2 (waiting for a load thread for 10.0 s, loading for 10.0 s)"
        )
    assert watchdog.check() is None
    assert tracker.in_progress() == []
    with tracker.track("c", 1):
        clock.now += 10
        assert watchdog.check() is not None  # back to the first threshold
