"""Choosing how to compile a model from how long one inference takes.

OVMS compiles every model with the THROUGHPUT hint (streams = cores). For models whose
inference takes microseconds, that costs the server far more than the inference itself:
OpenVINO's stream threads must be woken for each request and spin afterwards, on the same
two cores the network code needs. Measured here on a [1,16]->[1,4] model over KServe REST:
1,340 req/s with THROUGHPUT against 3,400 with LATENCY and one inference thread. So a model
whose probe inference is short, and whose plugin_config does not choose for itself, is
recompiled for latency on one thread.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import openvino as ov

SHORT_INFERENCE_US: Final = 500.0
"""Below this, a model is latency-bound: THROUGHPUT streams cost more than they give."""

LATENCY_PROPERTIES: Final[Mapping[str, Any]] = {
    "PERFORMANCE_HINT": "LATENCY",
    "INFERENCE_NUM_THREADS": 1,
}

USER_CHOICES: Final = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")
"""plugin_config keys that mean the user chose the execution mode: never override them."""

_TYPICAL_SIZE: Final = 224
"""Size tried for a free (non-batch) dimension: an image-like input, so CNNs probe honestly."""

_PROBE_RUNS: Final = 5
_PROBING: Final = threading.Lock()
"""One probe at a time: two versions loading at once (worker threads) deadlocked inside
OpenVINO's Python bindings in ``probe_inputs`` (both threads stuck there, seen at start-up with
two versions and coverage tracing on; stacks from faulthandler)."""


def may_tune(plugin_config: Mapping[str, Any], device: str) -> bool:
    """Whether the engine may choose the execution mode for this model."""
    return device == "CPU" and not any(key in plugin_config for key in USER_CHOICES)


def _probe_size(dim: ov.Dimension, is_batch: bool) -> int:
    if dim.is_static:
        return int(dim.get_length())
    wanted = 1 if is_batch else _TYPICAL_SIZE
    lower = max(int(dim.get_min_length()), 1)
    upper = int(dim.get_max_length())
    return max(lower, wanted if upper < 0 else min(wanted, upper))


def probe_inputs(compiled: ov.CompiledModel) -> list[np.ndarray[Any, Any]] | None:
    """Zero inputs of a representative size, or None when a model input cannot be probed."""
    arrays = []
    for port in compiled.inputs:
        partial = port.get_partial_shape()
        element = port.get_element_type()
        if partial.rank.is_dynamic or element == ov.Type.string:
            return None
        sizes = [_probe_size(dim, index == 0) for index, dim in enumerate(partial)]
        arrays.append(np.zeros(sizes, dtype=element.to_dtype()))
    return arrays


def median_inference_us(compiled: ov.CompiledModel) -> float | None:
    """Median time of a few synchronous inferences on zeros; None if the model won't run them."""
    with _PROBING:
        return _median_inference_us(compiled)


def _median_inference_us(compiled: ov.CompiledModel) -> float | None:
    arrays = probe_inputs(compiled)
    if arrays is None:
        return None
    request = compiled.create_infer_request()
    try:
        for index, array in enumerate(arrays):
            request.set_input_tensor(index, ov.Tensor(array))
        request.infer()  # the first call allocates and warms up
        samples = []
        for _ in range(_PROBE_RUNS):
            started = time.perf_counter()
            request.infer()
            samples.append((time.perf_counter() - started) * 1e6)
    except RuntimeError:
        return None
    finally:
        del request
    return statistics.median(samples)
