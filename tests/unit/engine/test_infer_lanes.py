"""Inference lanes: one worker thread per infer request, jobs from one queue. Exercised with
plain objects as infer requests and a Python function as the inference (the real OpenVINO
path is tested in test_shape_variants_openvino.py and the integration tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ovserve.engine.infer_lanes import InferLanes
from ovserve.errors import InferenceFailed

from _async import async_test


class Lane:
    """A fake infer request: it notes what ran on it and checks nothing runs on it twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.busy = False
        self.ran: list[float] = []


class Recorder:
    """The inference: doubles ``x`` after ``seconds`` (from the inputs), on the lane given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.threads: set[int] = set()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(
        self,
        lane: Lane,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str] | None,
    ) -> dict[str, npt.NDArray[Any]]:
        assert not lane.busy, f"two inferences at once on {lane.name}"
        lane.busy = True
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.get_ident())
        try:
            self.gate.wait(10)
            time.sleep(float(inputs["seconds"]))
            if float(inputs["x"][0]) < 0:
                raise InferenceFailed()
            lane.ran.append(float(inputs["x"][0]))
            return {"y": inputs["x"] * 2}
        finally:
            with self.lock:
                self.running -= 1
            lane.busy = False


def job(x: float, seconds: float = 0.0) -> dict[str, npt.NDArray[Any]]:
    return {"x": np.array([x], np.float32), "seconds": np.array(seconds)}


def lanes_of(count: int, run: Recorder) -> tuple[InferLanes[Lane], list[Lane]]:
    lanes = [Lane(f"lane{index}") for index in range(count)]
    return InferLanes(lanes, run, "test", lambda: Lane("inline")), lanes


@contextlib.contextmanager
def open_lanes(count: int, run: Recorder) -> Iterator[tuple[InferLanes[Lane], list[Lane]]]:
    """``count`` lanes on fake infer requests, closed on the way out."""
    lanes, requests = lanes_of(count, run)
    try:
        yield lanes, requests
    finally:
        lanes.close()


@async_test
async def test_each_caller_gets_its_own_answer_with_at_most_one_job_per_lane() -> None:
    run = Recorder()
    with open_lanes(2, run) as (lanes, requests):
        results = await asyncio.gather(
            *(lanes.run(job(float(index), 0.005), None) for index in range(12))
        )
        for index, result in enumerate(results):
            np.testing.assert_array_equal(result.outputs["y"], [2.0 * index])
            assert result.infer_us >= 5000
        assert run.most_at_once == 2
        assert len(run.threads) == 2
        assert threading.get_ident() not in run.threads
        assert sorted(x for lane in requests for x in lane.ran) == [float(i) for i in range(12)]
        assert max(result.wait_us for result in results) > 5000  # the later ones waited


@async_test
async def test_a_failure_reaches_only_its_own_caller() -> None:
    run = Recorder()
    with open_lanes(1, run) as (lanes, _):
        outcomes = await asyncio.gather(
            lanes.run(job(1.0), None),
            lanes.run(job(-1.0), None),
            lanes.run(job(3.0), None),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], InferenceFailed)
        ok = [outcome for index, outcome in enumerate(outcomes) if index != 1]
        assert [float(result.outputs["y"][0]) for result in ok] == [2.0, 6.0]  # type: ignore[union-attr]


@async_test
async def test_a_cancelled_job_keeps_its_lane_until_done_and_one_not_started_is_skipped() -> None:
    run = Recorder()
    with open_lanes(1, run) as (lanes, requests):
        running = asyncio.create_task(lanes.run(job(1.0, 0.2), None))
        waiting = asyncio.create_task(lanes.run(job(2.0), None))
        await asyncio.sleep(0.05)  # the first runs, the second waits in the queue
        running.cancel()
        waiting.cancel()
        after = await lanes.run(job(3.0), None)  # never on a lane still running the first
        np.testing.assert_array_equal(after.outputs["y"], [6.0])
        assert requests[0].ran == [1.0, 3.0]  # 2.0 was skipped, 1.0 ran to its end
        assert running.cancelled()
        assert waiting.cancelled()


@async_test
async def test_short_inferences_run_inline_on_one_more_request() -> None:
    run = Recorder()
    with open_lanes(1, run) as (lanes, requests):
        result = await lanes.run(job(4.0), None, inline=True)
        np.testing.assert_array_equal(result.outputs["y"], [8.0])
        assert run.threads == {threading.get_ident()}
        assert requests[0].ran == []


@async_test
async def test_hold_runs_only_when_idle_and_jobs_that_come_meanwhile_wait_for_it() -> None:
    run = Recorder()
    order: list[str] = []
    release_started = threading.Event()
    finish_release = threading.Event()

    def release() -> None:
        assert run.running == 0, "released while an inference ran"
        order.append("release")
        release_started.set()
        finish_release.wait(10)

    with open_lanes(2, run) as (lanes, _):
        try:
            busy = asyncio.create_task(lanes.run(job(1.0, 0.1), None))
            await asyncio.sleep(0.02)
            assert await lanes.hold(release) is False  # busy: not run
            await busy
            holding = asyncio.create_task(lanes.hold(release))
            await asyncio.to_thread(release_started.wait, 10)
            meanwhile = [asyncio.create_task(lanes.run(job(float(i)), None)) for i in range(3)]
            meanwhile.append(asyncio.create_task(lanes.run(job(9.0), None, inline=True)))
            await asyncio.sleep(0.05)
            assert not any(task.done() for task in meanwhile)
            assert run.running == 0
            finish_release.set()
            assert await holding is True
            answers = [float((await task).outputs["y"][0]) for task in meanwhile]
            assert answers == [0.0, 2.0, 4.0, 18.0]
            assert order == ["release"]
        finally:
            finish_release.set()


@async_test
async def test_close_finishes_given_jobs_then_refuses_new_ones() -> None:
    run = Recorder()
    run.gate.clear()
    lanes, requests = lanes_of(1, run)
    task = asyncio.create_task(lanes.run(job(5.0), None))
    await asyncio.sleep(0.02)
    closer = asyncio.create_task(asyncio.to_thread(lanes.close))
    await asyncio.sleep(0.02)
    run.gate.set()
    await closer
    assert float((await task).outputs["y"][0]) == 10.0
    assert requests[0].ran == [5.0]
    with pytest.raises(InferenceFailed):
        await lanes.run(job(1.0), None)
    assert not [t for t in threading.enumerate() if t.name.startswith("infer-test")]
