"""In-process throughput of the face-detection IR (THROUGHPUT hint, AsyncInferQueue).

Usage::

    python demos/face_detection/benchmark_model.py \
        --model models/face_detection/1/face-detection.xml --seconds 3

One compiled model (dynamic H, W) serves all sizes; the input is images/city.jpg resized to
each size. Precision is the device default unless ``--precision`` is given.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

DEFAULT_SIZES = ("300x300", "500x500", "600x400", "1280x720")
IMAGE = Path(__file__).resolve().parent / "images" / "city.jpg"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def bench_size(
    compiled: ov.CompiledModel, nireq: int, size: tuple[int, int], seconds: float
) -> tuple[float, float]:
    """Return (inferences per second, mean latency in ms) for one input size."""
    bgr = cv2.resize(cv2.imread(str(IMAGE), cv2.IMREAD_COLOR), size)
    x = np.ascontiguousarray(bgr.transpose(2, 0, 1)[None], dtype=np.float32)
    queue = ov.AsyncInferQueue(compiled, nireq)
    latencies: list[float] = []

    def done(_request: ov.InferRequest, start: float) -> None:
        latencies.append(time.perf_counter() - start)

    queue.set_callback(done)
    for _ in range(2 * nireq):  # warm-up
        queue.start_async({"data": x}, time.perf_counter())
    queue.wait_all()
    latencies.clear()

    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        queue.start_async({"data": x}, time.perf_counter())
    queue.wait_all()
    elapsed = time.perf_counter() - begin
    del queue
    gc.collect()
    return len(latencies) / elapsed, 1000 * float(np.mean(latencies))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("models/face_detection/1/face-detection.xml")
    )
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="WxH ...")
    parser.add_argument("--precision", default=None, help="INFERENCE_PRECISION_HINT, e.g. f32")
    args = parser.parse_args(argv)

    config: dict[str, str] = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if args.precision:
        config["INFERENCE_PRECISION_HINT"] = args.precision
    core = ov.Core()
    compiled = core.compile_model(args.model, args.device, config)
    nireq = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    print(
        f"device={args.device} nireq={nireq} "
        f"streams={compiled.get_property('NUM_STREAMS')} "
        f"precision={compiled.get_property('INFERENCE_PRECISION_HINT').to_string()}"
    )
    for text in args.sizes:
        fps, latency = bench_size(compiled, nireq, parse_size(text), args.seconds)
        print(f"{text:>10}: {fps:7.1f} inferences/s, mean latency {latency:6.1f} ms")
    del compiled
    gc.collect()


if __name__ == "__main__":
    main()
