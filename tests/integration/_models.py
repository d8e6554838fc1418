"""Small models built in the tests (OpenVINO graph API and the onnx helper), and references.

Builders return in-memory models; ``save_ir``/``save_onnx`` write them as
``<base>/<version>/model.xml|.bin`` or ``<base>/<version>/model.onnx``. ``reference`` runs a saved
model in this process with OpenVINO compiled at f32, for comparing with the server's answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import openvino as ov
import openvino.opset13 as ops
from onnx import TensorProto, helper, numpy_helper

Array = npt.NDArray[Any]
Dim = int | str
"""A model dimension: a size, ``-1`` (dynamic) or, for ONNX, a symbolic name."""

KSERVE_NUMPY: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
"""Every fixed-size KServe datatype and its numpy type."""

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
_core = ov.Core()


# --- writing models ----------------------------------------------------------------------------


def version_dir(base: Path, version: int = 1) -> Path:
    """``<base>/<version>``, created."""
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_ir(model: ov.Model, base: Path, version: int = 1, stem: str = "model") -> Path:
    """Write an IR pair (weights kept in f32) and return the ``.xml`` path."""
    path = version_dir(base, version) / f"{stem}.xml"
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def save_onnx(model: onnx.ModelProto, base: Path, version: int = 1, stem: str = "model") -> Path:
    """Write an ONNX file and return its path."""
    path = version_dir(base, version) / f"{stem}.onnx"
    onnx.save(model, path)
    return path


# --- OpenVINO graph-API models -----------------------------------------------------------------


def _named(node: Any, name: str) -> Any:
    node.output(0).get_tensor().set_names({name})
    return node


def _parameter(name: str, shape: Sequence[Dim], dtype: Any) -> Any:
    partial = ov.PartialShape([_ov_dim(dim) for dim in shape])
    return _named(ops.parameter(partial, dtype, name=name), name)


def _ov_dim(dim: Dim | tuple[int, int]) -> ov.Dimension:
    if isinstance(dim, tuple):
        return ov.Dimension(*dim)
    if isinstance(dim, str):
        return ov.Dimension(-1)
    return ov.Dimension(dim)


def scale_model(
    shape: Sequence[Dim | tuple[int, int]] = (1, 3, -1, -1),
    factor: float = 2.0,
    *,
    dtype: Any = np.float32,
    input_name: str = "data",
    output_name: str = "out",
) -> ov.Model:
    """``out = data * factor``; tuples in ``shape`` are OpenVINO ranges ``(min, max)``."""
    partial = ov.PartialShape([_ov_dim(dim) for dim in shape])
    data = _named(ops.parameter(partial, dtype, name=input_name), input_name)
    out = _named(ops.multiply(data, ops.constant(np.array(factor, dtype=dtype))), output_name)
    return ov.Model([out], [data], "scale")


def add_mul_model(shape: Sequence[Dim] = (-1, 4), dtype: Any = np.float32) -> ov.Model:
    """Two inputs ``a``, ``b``; two outputs ``sum = a + b`` and ``product = a * b``."""
    a = _parameter("a", shape, dtype)
    b = _parameter("b", shape, dtype)
    total = _named(ops.add(a, b), "sum")
    product = _named(ops.multiply(a, b), "product")
    return ov.Model([total, product], [a, b], "add_mul")


def dtypes_model(
    names: Sequence[str] = tuple(KSERVE_NUMPY), shape: Sequence[Dim] = (-1, 3)
) -> ov.Model:
    """One input ``in_<TYPE>`` per KServe datatype; ``out_<TYPE> = x + x`` (BOOL: ``not x``)."""
    params, results = [], []
    for name in names:
        dtype = KSERVE_NUMPY[name]
        param = _parameter(f"in_{name}", shape, dtype)
        node = ops.logical_not(param) if dtype is np.bool_ else ops.add(param, param)
        params.append(param)
        results.append(_named(node, f"out_{name}"))
    return ov.Model(results, params, "dtypes")


def string_model() -> ov.Model:
    """A string (BYTES) input ``text`` [-1] returned unchanged as output ``text_out``."""
    text = _parameter("text", [-1], ov.Type.string)
    out = _named(ops.concat([text], 0), "text_out")
    return ov.Model([out], [text], "strings")


def slow_model(size: int = 1024, depth: int = 48, seed: int = 0, summed: bool = False) -> ov.Model:
    """``x`` [-1, size] through ``depth`` MatMul+Tanh layers: ~1 s per [size, size] request here.

    ``summed`` adds up each row at the end: ``y`` is [-1, 1], a reply of a few bytes (a large reply
    to a slow client can be cut short by the peer's close at shutdown: see test_workers).
    """
    rng = np.random.default_rng(seed)
    weights = ops.constant((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32))
    x = _parameter("x", [-1, size], np.float32)
    node: Any = x
    for _ in range(depth):
        node = ops.tanh(ops.matmul(node, weights, False, False))
    if summed:
        node = ops.reduce_sum(node, np.array([1], dtype=np.int64), keep_dims=True)
    return ov.Model([_named(node, "y")], [x], "slow")


# --- ONNX models -------------------------------------------------------------------------------


def _onnx_dims(shape: Sequence[Dim]) -> list[int | str | None]:
    return [f"d{index}" if dim == -1 else dim for index, dim in enumerate(shape)]


def conv_onnx(
    height: Dim = "height",
    width: Dim = "width",
    *,
    channels: int = 3,
    filters: int = 4,
    seed: int = 0,
) -> onnx.ModelProto:
    """``out = relu(conv3x3(data) + bias)``; ``data`` is [1, channels, height, width]."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((filters, channels, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    dims = [1, channels, height, width]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["data", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["out"]),
        ],
        "conv",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, filters, height, width])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    return _onnx_model(graph)


def add_onnx(shape: Sequence[Dim] = (-1, 4)) -> onnx.ModelProto:
    """ONNX ``sum = a + b`` over two FP32 inputs (``-1`` dims become symbolic)."""
    dims = _onnx_dims(shape)
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, dims),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, dims),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, dims)],
    )
    return _onnx_model(graph)


def _onnx_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    # A conservative IR version and opset that every recent OpenVINO ONNX frontend reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- references --------------------------------------------------------------------------------


def reference(model: Path | ov.Model, inputs: Mapping[str, Array]) -> dict[str, Array]:
    """Run a model in this process (CPU, f32) and return every output by name."""
    source = _core.read_model(str(model)) if isinstance(model, Path) else model
    compiled = _core.compile_model(source, "CPU", F32)
    results = compiled.create_infer_request().infer(dict(inputs))
    return {port.get_any_name(): np.array(results[port]) for port in compiled.outputs}
