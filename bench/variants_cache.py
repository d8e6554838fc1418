#!/usr/bin/env python
"""In-process: RSS growth over distinct input shapes for a runtime-cache / oneDNN-cache setting.

    .venv/bin/python bench/variants_cache.py CPU_RUNTIME_CACHE_CAPACITY SHAPES [ONEDNN_CACHE]

MobileNetV2 (bench/variants_models.py), dynamic, THROUGHPUT, one infer request: prints the time
of a repeated 96x96 inference, RSS before and after SHAPES distinct sizes (32..159), and after
malloc_trim and release_memory. A capacity below 0 leaves OpenVINO's default. Run one process
per setting (oneDNN reads its variable once). Used to choose ovserve's defaults
(bench/variants.md).
"""

from __future__ import annotations

import ctypes
import os
import random
import sys
import time

import numpy as np
import openvino as ov
from variants_models import mobilenet_v2


def rss_mib() -> float:
    """Resident memory of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    capacity, count = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = sys.argv[3]  # read lazily by oneDNN
    properties: dict[str, object] = {"PERFORMANCE_HINT": "THROUGHPUT"}
    if capacity >= 0:
        properties["CPU_RUNTIME_CACHE_CAPACITY"] = capacity
    compiled = ov.Core().compile_model(mobilenet_v2(), "CPU", properties)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    for _ in range(20):
        request.infer(x)
    started = time.perf_counter()
    for _ in range(50):
        request.infer(x)
    repeated_ms = (time.perf_counter() - started) / 50 * 1e3
    before = rss_mib()
    rng = random.Random(7)
    shapes: set[tuple[int, int]] = set()
    while len(shapes) < count:
        shapes.add((rng.randrange(32, 160), rng.randrange(32, 160)))
    for h, w in shapes:
        request.infer(np.zeros((1, 3, h, w), np.float32))
    after = rss_mib()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    trimmed = rss_mib()
    del request
    compiled.release_memory()
    libc.malloc_trim(0)
    onednn = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "unset")
    print(f"runtime cache {capacity}, oneDNN cache {onednn}: repeated {repeated_ms:.2f} ms")
    print(f"RSS {before:.0f} -> {after:.0f} MiB (+{after - before:.0f}) over {count} shapes")
    print(f"after malloc_trim {trimmed:.0f} MiB; after release_memory {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
