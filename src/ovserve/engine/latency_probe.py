"""Choosing how to compile a model from the work one inference does, estimated from the model.

OVMS compiles every model with the THROUGHPUT hint (streams = cores). For models whose
inference takes microseconds, that costs the server far more than the inference itself:
OpenVINO's stream threads must be woken for each request and spin afterwards, on the same
two cores the network code needs. Measured here on a [1,16]->[1,4] model over KServe REST:
1,340 req/s with THROUGHPUT against 3,400 with LATENCY and one inference thread. So a model
whose inference is small, and whose plugin_config does not choose for itself, is compiled
for latency on one thread.

"Small" is decided from the model, not from a stopwatch: the same model and flags must compile
the same way on an idle and on a busy machine (timing a few inferences at start-up gave a
conv model 1 infer request when idle and 2 under load). The estimate counts, at a
representative input size (batch 1, free dimensions 224 within their ranges), the
multiply-adds of convolutions and matrix products plus the elements every operation writes,
weighted as a few multiply-adds each (moving memory costs more than arithmetic). Measured on
this machine, one core does about 10 of these operations per nanosecond on small models
(within a factor of 3 either way), so the limit below is about 500 us of one core.
Models whose cost cannot be estimated (dynamic rank, sub-graphs, shapes that do not resolve)
keep OVMS's THROUGHPUT compilation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import openvino as ov

LATENCY_BOUND_OPS: Final = 5_000_000
"""Below this many estimated operations per inference, a model is latency-bound."""

ELEMENT_WEIGHT: Final = 4
"""Operations counted for each element an operation writes."""

LATENCY_PROPERTIES: Final[Mapping[str, Any]] = {
    "PERFORMANCE_HINT": "LATENCY",
    "INFERENCE_NUM_THREADS": 1,
}

UNPINNED: Final[Mapping[str, Any]] = {"ENABLE_CPU_PINNING": False}
"""Added to LATENCY_PROPERTIES unless plugin_config sets pinning. A latency model's inference
runs inline on the event loop's thread, and with pinning on OpenVINO binds that thread to its
core and back (two sched_setaffinity calls) on every inference: the loop then waits for that
one core even when the other is free. Measured on a tiny model over gRPC on a shared 2-core
machine: 40-70 us more server CPU per request pinned, and stalls to a few requests per second
while another process held the pinned core."""

USER_CHOICES: Final = ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS")
"""plugin_config keys that mean the user chose the execution mode: never override them."""

_TYPICAL_SIZE: Final = 224
"""Size tried for a free (non-batch) dimension: an image-like input, so CNNs count honestly."""

_CONVOLUTIONS: Final = frozenset(
    {"Convolution", "BinaryConvolution", "DeformableConvolution", "GroupConvolution"}
)
_TRANSPOSED_CONVOLUTIONS: Final = frozenset(
    {"ConvolutionBackpropData", "GroupConvolutionBackpropData"}
)
_SUB_GRAPHS: Final = frozenset({"Loop", "TensorIterator", "If"})
_NOT_COUNTED: Final = frozenset({"Parameter", "Constant", "Result"})


@dataclass(frozen=True, slots=True)
class Decision:
    """How a model is compiled, and why (for the log)."""

    latency: bool
    reason: str


def latency_properties(plugin_config: Mapping[str, Any]) -> dict[str, Any]:
    """What a latency-bound model is compiled with, on top of its plugin_config."""
    unpinned = {} if "ENABLE_CPU_PINNING" in plugin_config else UNPINNED
    return {**LATENCY_PROPERTIES, **unpinned}


def may_tune(plugin_config: Mapping[str, Any], device: str) -> bool:
    """Whether the engine may choose the execution mode for this model."""
    return device == "CPU" and not any(key in plugin_config for key in USER_CHOICES)


def decide(model: ov.Model) -> Decision:
    """LATENCY on one thread for a small model, else THROUGHPUT; the same answer every time."""
    shapes = probe_shapes(model)
    if isinstance(shapes, str):
        return Decision(False, f"its cost cannot be estimated ({shapes})")
    ops = estimate_ops(model, shapes)
    if isinstance(ops, str):
        return Decision(False, f"its cost cannot be estimated ({ops})")
    at = ", ".join(str(list(shape)) for shape in shapes)
    work = f"about {_amount(ops)} operations per inference at input shape {at}"
    limit = f"{LATENCY_BOUND_OPS / 1e6:.0f} M"
    if ops < LATENCY_BOUND_OPS:
        return Decision(True, f"{work}, under the {limit} limit for latency-bound models")
    return Decision(False, f"{work}, over the {limit} limit for latency-bound models")


def _amount(ops: int) -> str:
    if ops >= 1_000_000:
        return f"{ops / 1e6:.1f} M"
    if ops >= 1_000:
        return f"{ops / 1e3:.1f} k"
    return str(ops)


def _probe_size(dim: ov.Dimension, is_batch: bool) -> int:
    if dim.is_static:
        return int(dim.get_length())
    wanted = 1 if is_batch else _TYPICAL_SIZE
    lower = max(int(dim.get_min_length()), 1)
    upper = int(dim.get_max_length())
    return max(lower, wanted if upper < 0 else min(wanted, upper))


def probe_shapes(model: ov.Model) -> list[tuple[int, ...]] | str:
    """A representative static shape per input, or why there is none."""
    shapes = []
    for port in model.inputs:
        partial = port.get_partial_shape()
        if partial.rank.is_dynamic:
            return f"input {port.get_any_name()} has a dynamic rank"
        shapes.append(tuple(_probe_size(dim, index == 0) for index, dim in enumerate(partial)))
    return shapes


def estimate_ops(model: ov.Model, shapes: list[tuple[int, ...]]) -> int | str:
    """Estimated operations of one inference at ``shapes``, or why it cannot be estimated."""
    if model.is_dynamic():
        model = model.clone()  # the model to compile keeps its dynamic shapes
        try:
            probe = zip(model.inputs, shapes, strict=True)
            model.reshape({port: ov.PartialShape(list(shape)) for port, shape in probe})
        except RuntimeError:
            return "the model does not take the probe shapes"
    total = 0
    for node in model.get_ordered_ops():
        kind = node.get_type_name()
        if kind in _NOT_COUNTED:
            continue
        if kind in _SUB_GRAPHS:
            return f"it runs a {kind} sub-graph"
        outputs = [port.get_partial_shape() for port in node.outputs()]
        if any(shape.is_dynamic for shape in outputs):
            continue  # data-dependent sizes (e.g. NonMaxSuppression): not countable up front
        written = sum(_count(shape.to_shape()) for shape in outputs)
        total += ELEMENT_WEIGHT * written + _multiply_adds(node, kind, written)
    return total


def _multiply_adds(node: ov.Node, kind: str, written: int) -> int:
    weights = _static_input(node, 1)
    if kind in _CONVOLUTIONS and weights is not None and len(weights) >= 3:
        # Weights [C_out, C_in, k...] or grouped [G, C_out/G, C_in/G, k...]: each output
        # element sums over its group's input channels and the kernel window.
        per_output = _count(weights[2:] if kind.startswith("Group") else weights[1:])
        return written * per_output
    if kind in _TRANSPOSED_CONVOLUTIONS and weights is not None and len(weights) >= 3:
        # Weights [C_in, C_out, k...] or [G, C_in/G, C_out/G, k...]: each input element is
        # spread over its group's output channels and the kernel window.
        data = _static_input(node, 0)
        per_input = _count(weights[2:] if kind.startswith("Group") else weights[1:])
        return 0 if data is None else _count(data) * per_input
    if kind == "MatMul":
        left = _static_input(node, 0)
        if not left:
            return 0
        transposed = bool(node.get_attributes().get("transpose_a", False))
        inner = left[-2] if transposed and len(left) > 1 else left[-1]
        return written * inner
    return 0


def _static_input(node: ov.Node, index: int) -> list[int] | None:
    if node.get_input_size() <= index:
        return None
    shape = node.input(index).get_partial_shape()
    return None if shape.is_dynamic else [int(dim) for dim in shape.to_shape()]


def _count(dims: Any) -> int:
    return math.prod(int(dim) for dim in dims)
