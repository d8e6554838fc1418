"""Request validation against a model's inputs, in OVMS's order and with its messages.

Order: number of inputs; then for each model input: present, negative or zero dimensions,
precision, rank, batch dimension, other dimensions, content size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.config.shape import format_sizes
from ovserve.errors import ErrorCode, InvalidInput, ShapeMismatch
from ovserve.tensors import RequestTensor, TensorSpec


def batch_index(spec: TensorSpec) -> int | None:
    """Index of the batch dimension: the layout's ``N``, else 0; None for scalars."""
    if spec.shape.rank == 0:
        return None
    if spec.layout and "N" in spec.layout and "." not in spec.layout:
        index = spec.layout.index("N")
        return index if index < spec.shape.rank else None
    return 0


def check_count(specs: Sequence[TensorSpec], tensors: Sequence[RequestTensor]) -> None:
    """The request must carry exactly as many inputs as the model has."""
    if len(tensors) != len(specs):
        raise InvalidInput(
            f"Expected: {len(specs)}; Actual: {len(tensors)}", ErrorCode.INVALID_NO_OF_INPUTS
        )


def find_input(spec: TensorSpec, by_name: dict[str, RequestTensor]) -> RequestTensor:
    """The request tensor for a model input, or INVALID_MISSING_INPUT."""
    try:
        return by_name[spec.name]
    except KeyError:
        raise InvalidInput(
            f"Required input: {spec.name}", ErrorCode.INVALID_MISSING_INPUT
        ) from None


def check_positive(spec: TensorSpec, tensor: RequestTensor) -> None:
    """Every dimension must be above zero."""
    if any(size <= 0 for size in tensor.shape):
        raise ShapeMismatch(
            "Negative or zero dimension size is not acceptable: "
            f"{format_sizes(tensor.shape)}; input name: {spec.name}"
        )


def check_shape(spec: TensorSpec, tensor: RequestTensor) -> None:
    """Rank, then the batch dimension, then the other dimensions."""
    sizes = tensor.shape
    name = spec.name
    if len(sizes) != spec.shape.rank:
        raise ShapeMismatch(
            f"Expected: {spec.shape}; Actual: {format_sizes(sizes)}; input name: {name}",
            ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS,
        )
    batch = batch_index(spec)
    if batch is not None and not spec.shape.dims[batch].match(sizes[batch]):
        raise ShapeMismatch(
            f"Expected: {spec.shape.dims[batch]}; Actual: {sizes[batch]}; input name: {name}",
            ErrorCode.INVALID_BATCH_SIZE,
        )
    if not spec.shape.match(sizes):
        raise ShapeMismatch(
            f"Expected: {spec.shape}; Actual: {format_sizes(sizes)}; input name: {name}"
        )


def check_precision(spec: TensorSpec, tensor: RequestTensor) -> None:
    """The request datatype must equal the model's."""
    if tensor.datatype is not spec.datatype:
        raise InvalidInput(
            f"Expected: {spec.datatype.value}; Actual: {tensor.datatype.value}; "
            f"input name: {spec.name}",
            ErrorCode.INVALID_PRECISION,
        )


def to_array(spec: TensorSpec, tensor: RequestTensor) -> npt.NDArray[Any]:
    """Check the content size and view the data as an array of the request's shape."""
    count = math.prod(tensor.shape)
    data = tensor.data
    if isinstance(data, np.ndarray):
        if data.size != count:
            raise InvalidInput(
                f"Expected: {count} values; Actual: {data.size} values; input name: {spec.name}",
                ErrorCode.INVALID_VALUE_COUNT,
            )
        return data.reshape(tensor.shape).astype(spec.datatype.numpy_dtype, copy=False)
    if isinstance(data, list):
        if len(data) != count:
            raise InvalidInput(
                f"Expected: {count} values; Actual: {len(data)} values; input name: {spec.name}",
                ErrorCode.INVALID_VALUE_COUNT,
            )
        return np.array(data, dtype=np.object_).reshape(tensor.shape)
    expected = count * spec.datatype.itemsize
    actual = memoryview(data).nbytes
    if actual != expected:
        raise InvalidInput(
            f"Expected: {expected} bytes; Actual: {actual} bytes; input name: {spec.name}",
            ErrorCode.INVALID_CONTENT_SIZE,
        )
    dtype = spec.datatype.numpy_dtype.newbyteorder("<")
    return np.frombuffer(data, dtype=dtype).reshape(tensor.shape)


def validate_inputs(
    specs: Sequence[TensorSpec], tensors: Sequence[RequestTensor]
) -> dict[str, npt.NDArray[Any]]:
    """Validate a request against the model inputs and return arrays by input name."""
    check_count(specs, tensors)
    by_name = {tensor.name: tensor for tensor in tensors}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for spec in specs:
        tensor = find_input(spec, by_name)
        check_positive(spec, tensor)
        check_precision(spec, tensor)
        check_shape(spec, tensor)
        arrays[spec.name] = to_array(spec, tensor)
    return arrays


def validate_outputs(specs: Sequence[TensorSpec], requested: Sequence[str] | None) -> None:
    """Requested output names must exist."""
    if requested is None:
        return
    known = {spec.name for spec in specs}
    for name in requested:
        if name not in known:
            raise InvalidInput(f"Output name: {name}", ErrorCode.INVALID_OUTPUT)
