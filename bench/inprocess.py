"""The in-process OpenVINO limit: no server, no network, the same model file and request bytes.

usage: inprocess.py MODEL_FILE tiny|conv|face [--sizes WxH ...] [--latency]

A worker process: it compiles the model once, prints one JSON line describing it, then answers
each stdin line ``MODE LABEL SECONDS`` (MODE throughput or latency, LABEL an input label such as
1x16 or 600x400) with one JSON line ``{"rate": inferences per second, "n": inferences}``, so
that bench.py can interleave in-process and server measurements on a noisy machine.

Compiled as ovserve compiles a model given only a path: as-is (dynamic dims stay dynamic), CPU
default precision. throughput: PERFORMANCE_HINT THROUGHPUT driven by AsyncInferQueue with
OPTIMAL_NUMBER_OF_INFER_REQUESTS jobs; latency: PERFORMANCE_HINT LATENCY, synchronous
``infer()`` one at a time. One compiled model serves every size, as in the server. Nothing else
(no onnxruntime, no grpc) is loaded beside OpenVINO.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import openvino as ov

from models import FACE_SIZES, Request, conv_request, face_request, tiny_request


def queue_rate(
    queue: ov.AsyncInferQueue, jobs: int, x: np.ndarray, seconds: float
) -> tuple[float, int]:
    """Inferences per second with ``jobs`` requests always in flight, and their count."""
    for _ in range(2 * jobs):  # warm-up; start_async blocks while every job is busy
        queue.start_async({0: x}, share_inputs=True)
    queue.wait_all()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async({0: x}, share_inputs=True)
        n += 1
    queue.wait_all()
    return n / (time.perf_counter() - t0), n


def sync_rate(request: ov.InferRequest, x: np.ndarray, seconds: float) -> tuple[float, int]:
    """Synchronous inferences per second, one at a time, and their count."""
    for _ in range(20):
        request.infer({0: x}, share_inputs=True)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        request.infer({0: x}, share_inputs=True)
        n += 1
    return n / (time.perf_counter() - t0), n


def _type_name(value: Any) -> str:
    return str(value.get_type_name()) if hasattr(value, "get_type_name") else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_file")
    parser.add_argument("which", choices=("tiny", "conv", "face"))
    parser.add_argument("--sizes", nargs="+", default=list(FACE_SIZES))
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    if args.which == "face":
        requests: list[Request] = [face_request(size) for size in args.sizes]
    else:
        requests = [tiny_request() if args.which == "tiny" else conv_request()]
    arrays = {req.label: req.array() for req in requests}

    core = ov.Core()
    tput = core.compile_model(args.model_file, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    jobs = int(tput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(tput, jobs)
    sync = None
    if args.latency:
        lat = core.compile_model(args.model_file, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        sync = lat.create_infer_request()
    precision = _type_name(tput.get_property("INFERENCE_PRECISION_HINT"))
    how = {
        "throughput": f"THROUGHPUT AsyncInferQueue(jobs={jobs}, "
        f"streams={tput.get_property('NUM_STREAMS')}), {precision}",
        "latency": f"LATENCY sync infer(), {precision}",
    }
    version = ov.get_version().split("-")[0]
    print(json.dumps({"ready": True, "how": how, "openvino": version, "cpus": os.cpu_count()}))
    sys.stdout.flush()
    for line in sys.stdin:
        mode, label, seconds = line.split()
        x = arrays[label]
        if mode == "latency" and sync is not None:
            rate, n = sync_rate(sync, x, float(seconds))
        else:
            rate, n = queue_rate(queue, jobs, x, float(seconds))
        print(json.dumps({"rate": rate, "n": n}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
