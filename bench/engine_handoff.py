"""What the hand-off to an inference costs on one core: OpenVINO alone against the server's pattern.

usage: .venv/bin/python bench/engine_handoff.py [MODEL.onnx] [THROUGHPUT|LATENCY]

Pinned to core 0, one model (default: the bench's conv, built by bench/run-throughput), the same
input each time, 300 inferences per mode, printed twice: CPU per inference and rate for
``infer()`` on the main thread, ``AsyncInferQueue``, and asyncio (uvloop) handing each inference to
a ThreadPoolExecutor with two requests in flight (what ovserve's engine does for models slower
than its inline threshold), and the same with ``start_async`` and a callback instead of a thread.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openvino as ov
import uvloop

BENCH = Path(__file__).resolve().parent
COUNT = 300


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else str(BENCH / "results/models/conv/1/model.onnx")
    hint = sys.argv[2] if len(sys.argv) > 2 else "THROUGHPUT"
    os.sched_setaffinity(0, {0})
    compiled = ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
    nireq = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    print(f"{hint}: nireq {nireq}, streams {compiled.get_property('NUM_STREAMS')}")
    fill = [1, 3, 224, 224]  # dynamic dimensions take the bench's conv request's sizes
    shape = [
        d.get_length() if d.is_static else fill[i % 4]
        for i, d in enumerate(compiled.inputs[0].get_partial_shape())
    ]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    requests = [compiled.create_infer_request() for _ in range(nireq)]

    def sync_main(count: int) -> None:
        for _ in range(count):
            requests[0].set_input_tensor(0, ov.Tensor(x))
            requests[0].infer()

    def queue(count: int) -> None:
        jobs = ov.AsyncInferQueue(compiled, nireq)
        for _ in range(count):
            jobs.start_async({0: x})
        jobs.wait_all()

    def server_like(count: int) -> None:
        with ThreadPoolExecutor(nireq) as pool:
            uvloop.run(_two_clients(pool, requests, x, count))

    def callbacks(count: int) -> None:
        uvloop.run(_two_clients(None, requests, x, count))

    for _ in range(2):
        for label, run in (
            ("infer() on the main thread", sync_main),
            ("AsyncInferQueue", queue),
            ("asyncio + worker thread, 2 in flight", server_like),
            ("asyncio + start_async callback, 2 in flight", callbacks),
        ):
            _timed(label, run)


async def _two_clients(
    pool: ThreadPoolExecutor | None, requests: list[ov.InferRequest], x: np.ndarray, count: int
) -> None:
    """Two clients in a loop; each inference on a worker thread of ``pool``, or (None) started
    with ``start_async`` and awaited through its callback."""
    loop = asyncio.get_running_loop()
    free = list(requests)
    slots = asyncio.Semaphore(len(requests))

    async def one() -> None:
        async with slots:
            request = free.pop()

            def run() -> np.ndarray:
                request.set_input_tensor(0, ov.Tensor(x))
                request.infer()
                return request.get_output_tensor(0).data.copy()

            if pool is not None:
                await asyncio.wrap_future(pool.submit(run))
            else:
                done = loop.create_future()
                request.set_callback(
                    lambda _: loop.call_soon_threadsafe(done.set_result, None), None
                )
                request.set_input_tensor(0, ov.Tensor(x))
                request.start_async()
                await done
                request.get_output_tensor(0).data.copy()
            free.append(request)

    async def client() -> None:
        for _ in range(count // 2):
            await one()

    await asyncio.gather(client(), client())


def _timed(label: str, run: Callable[[int], None]) -> None:
    run(10)
    cpu, wall = time.process_time(), time.perf_counter()
    run(COUNT)
    cpu_us = 1e6 * (time.process_time() - cpu) / COUNT
    print(
        f"{label:40s} CPU/inference {cpu_us:6.0f} us, {COUNT / (time.perf_counter() - wall):5.0f}/s"
    )


if __name__ == "__main__":
    main()
