"""Where a compiled model's inferences run: one worker thread per infer request, all taking
jobs from one queue.

The event loop puts a job in the queue; the first free worker runs it on its own infer request
and hands the outcome back with ``call_soon_threadsafe``. A worker that finishes takes the next
waiting job at once, so back-to-back inferences do not wait for a round trip through the event
loop, and the loop's share of each hand-off is one future and one queue put (a thread pool with
an acquire/release of infer requests on the loop cost more: see bench/throughput.md).

Inferences expected to take only tens of microseconds run inline on the loop instead, on one
more infer request made when first needed: there the hand-off would cost more than the work.

OpenVINO's own asynchronous callbacks are not used: when an inference fails, the Python binding
never calls the callback, which would leave the request hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy.typing as npt

from ovserve.engine.base import EngineResult
from ovserve.errors import InferenceFailed

Request = TypeVar("Request")
"""An infer request (``ov.InferRequest``; any object in tests)."""

Outputs = dict[str, npt.NDArray[Any]]
Run = Callable[[Request, Mapping[str, npt.NDArray[Any]], Sequence[str] | None], Outputs]
"""Runs one inference on the given infer request: inputs in, the requested outputs out."""


@dataclass(eq=False, slots=True)
class _Job:
    inputs: Mapping[str, npt.NDArray[Any]]
    outputs: Sequence[str] | None
    done: asyncio.Future[EngineResult]
    queued: float


class InferLanes(Generic[Request]):
    """Runs inferences on a fixed set of infer requests, one worker thread each."""

    def __init__(
        self,
        requests: Sequence[Request],
        run: Run[Request],
        name: str,
        make_request: Callable[[], Request],
    ) -> None:
        self._requests = list(requests)
        self._run = run
        self._name = name
        self._make_request = make_request
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._in_flight = 0
        """Jobs queued or running (counted on the loop)."""
        self._parked: list[_Job] | None = None
        """While :meth:`hold` runs its action: the jobs that wait for it."""
        self._inline: Request | None = None
        self._closed = False

    async def run(
        self,
        inputs: Mapping[str, npt.NDArray[Any]],
        outputs: Sequence[str] | None,
        *,
        inline: bool = False,
    ) -> EngineResult:
        """One inference: on the loop itself when ``inline``, else on the first free worker."""
        if self._closed:
            raise InferenceFailed()
        if inline and self._parked is None:
            request = self._inline
            if request is None:
                request = self._inline = self._make_request()
            started = time.perf_counter()
            result = self._run(request, inputs, outputs)
            return EngineResult(result, 0.0, (time.perf_counter() - started) * 1e6)
        job = _Job(inputs, outputs, asyncio.get_running_loop().create_future(), time.perf_counter())
        if self._parked is not None:
            self._parked.append(job)
        else:
            self._submit(job)
        # A caller that is cancelled cancels ``job.done``: a worker that already runs the job
        # finishes it first (its infer request stays busy till then); one that has not started
        # it yet skips it.
        return await job.done

    async def hold(self, action: Callable[[], object]) -> bool:
        """Run ``action`` on a thread while no inference runs; False (not run) when busy.

        Jobs that come meanwhile wait and run after it.
        """
        if self._in_flight or self._parked is not None or self._closed:
            return False
        self._parked = []
        try:
            await asyncio.to_thread(action)
        finally:
            parked, self._parked = self._parked, None
            for job in parked:
                self._submit(job)
        return True

    def close(self) -> None:
        """Finish the jobs already given, stop the workers, drop the infer requests."""
        if self._closed:
            return
        self._closed = True
        for job in self._parked or ():
            self._submit(job)
        self._parked = None
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        self._requests.clear()
        self._inline = None

    def _submit(self, job: _Job) -> None:
        self._in_flight += 1
        if not self._threads:
            self._start_workers()
        self._jobs.put(job)

    def _start_workers(self) -> None:
        for index, request in enumerate(self._requests):
            thread = threading.Thread(
                target=self._work, args=(request,), name=f"infer-{self._name}_{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self, request: Request) -> None:
        while (job := self._jobs.get()) is not None:
            started = time.perf_counter()
            result: Outputs | None = None
            error: Exception | None = None
            if not job.done.cancelled():  # a flag read; the loop is the only writer
                try:
                    result = self._run(request, job.inputs, job.outputs)
                except Exception as caught:  # the caller's to handle
                    error = caught
            ended = time.perf_counter()
            # The loop may be closed at shutdown; nobody waits for the answer then.
            with contextlib.suppress(RuntimeError):
                job.done.get_loop().call_soon_threadsafe(
                    self._finished, job, result, error, started, ended
                )

    def _finished(
        self,
        job: _Job,
        result: Outputs | None,
        error: Exception | None,
        started: float,
        ended: float,
    ) -> None:
        self._in_flight -= 1
        done = job.done
        if done.done():  # the caller was cancelled
            return
        if error is not None:
            done.set_exception(error)
        elif result is not None:
            done.set_result(
                EngineResult(result, (started - job.queued) * 1e6, (ended - started) * 1e6)
            )
