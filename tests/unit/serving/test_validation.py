"""Request validation: OVMS's order, codes and exact messages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ovserve.config.shape import Dimension, Shape
from ovserve.errors import ErrorCode, InvalidInput, ShapeMismatch
from ovserve.serving.validation import batch_index, validate_inputs, validate_outputs
from ovserve.tensors import DataType, RequestTensor, TensorSpec

FP32 = DataType.FP32
RANGE = Dimension.range(200, 500)
DATA = TensorSpec("data", FP32, Shape.of(1, 3, RANGE, RANGE))


def raw(name: str, datatype: DataType, *shape: int, nbytes: int | None = None) -> RequestTensor:
    """A raw-buffer input holding the right number of bytes unless ``nbytes`` says otherwise."""
    count = int(np.prod(shape)) if shape else 1
    size = count * datatype.itemsize if nbytes is None else nbytes
    return RequestTensor(name, datatype, tuple(shape), bytes(max(size, 0)))


def typed(name: str, array: np.ndarray[Any, Any], shape: tuple[int, ...]) -> RequestTensor:
    """A typed-container input: values already decoded."""
    return RequestTensor(name, DataType.from_numpy(array.dtype), shape, array)


def failure(specs: list[TensorSpec], tensors: list[RequestTensor]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validate_inputs(specs, tensors)
    return caught.value


# --- the exact OVMS texts ----------------------------------------------------------------------


def test_out_of_range_dimension_has_ovms_text() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 3, 600, 400)])
    assert isinstance(error, ShapeMismatch)
    assert error.code is ErrorCode.INVALID_SHAPE
    assert error.text == (
        "Invalid input shape - Expected: (1,3,[200~500],[200~500]); Actual: (1,3,600,400); "
        "input name: data"
    )


def test_number_of_inputs() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 3, 300, 300), raw("x", FP32, 1)])
    assert error.code is ErrorCode.INVALID_NO_OF_INPUTS
    assert error.text == "Invalid number of inputs - Expected: 1; Actual: 2"


def test_empty_request() -> None:
    error = failure([DATA], [])
    assert error.text == "Invalid number of inputs - Expected: 1; Actual: 0"


def test_missing_input() -> None:
    error = failure([DATA], [raw("image", FP32, 1, 3, 300, 300)])
    assert error.code is ErrorCode.INVALID_MISSING_INPUT
    assert error.text == "Missing input with specific name - Required input: data"


def test_precision() -> None:
    error = failure([DATA], [raw("data", DataType.FP16, 1, 3, 300, 300)])
    assert error.code is ErrorCode.INVALID_PRECISION
    assert error.text == (
        "Invalid input precision - Expected: FP32; Actual: FP16; input name: data"
    )


def test_rank() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 3, 300)])
    assert isinstance(error, ShapeMismatch)
    assert error.code is ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS
    assert error.text == (
        "Invalid number of shape dimensions - Expected: (1,3,[200~500],[200~500]); "
        "Actual: (1,3,300); input name: data"
    )


def test_batch() -> None:
    error = failure([DATA], [raw("data", FP32, 4, 3, 300, 300)])
    assert error.code is ErrorCode.INVALID_BATCH_SIZE
    assert error.text == "Invalid input batch size - Expected: 1; Actual: 4; input name: data"


def test_batch_range_is_printed_as_a_range() -> None:
    spec = TensorSpec("x", FP32, Shape.of(Dimension.range(1, 8), 2))
    error = failure([spec], [raw("x", FP32, 9, 2)])
    assert error.text == "Invalid input batch size - Expected: [1~8]; Actual: 9; input name: x"


def test_static_dimension() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 4, 300, 300)])
    assert error.code is ErrorCode.INVALID_SHAPE
    assert error.text == (
        "Invalid input shape - Expected: (1,3,[200~500],[200~500]); Actual: (1,4,300,300); "
        "input name: data"
    )


@pytest.mark.parametrize("sizes", [(1, 3, 0, 300), (0, 3, 300, 300), (1, 3, -5, 300)])
def test_zero_or_negative_dimension(sizes: tuple[int, ...]) -> None:
    error = failure([DATA], [raw("data", FP32, *sizes)])
    assert error.code is ErrorCode.INVALID_SHAPE
    shown = "(" + ",".join(str(size) for size in sizes) + ")"
    assert error.text == (
        "Invalid input shape - Negative or zero dimension size is not acceptable: "
        f"{shown}; input name: data"
    )


def test_zero_dimension_on_a_dynamic_input_is_rejected_too() -> None:
    spec = TensorSpec("x", FP32, Shape.of(-1, -1))
    error = failure([spec], [raw("x", FP32, 2, 0)])
    assert "Negative or zero dimension size is not acceptable: (2,0); input name: x" in error.text


def test_content_size() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 3, 300, 300, nbytes=100)])
    assert error.code is ErrorCode.INVALID_CONTENT_SIZE
    assert error.text == (
        "Invalid content size of tensor proto - Expected: 1080000 bytes; Actual: 100 bytes; "
        "input name: data"
    )


def test_value_count_of_typed_contents() -> None:
    spec = TensorSpec("x", FP32, Shape.of(2, 3))
    error = failure([spec], [typed("x", np.zeros(5, np.float32), (2, 3))])
    assert error.code is ErrorCode.INVALID_VALUE_COUNT
    assert error.text == (
        "Invalid number of values in tensor proto container - Expected: 6 values; "
        "Actual: 5 values; input name: x"
    )


def test_value_count_of_bytes() -> None:
    spec = TensorSpec("s", DataType.BYTES, Shape.of(-1))
    error = failure([spec], [RequestTensor("s", DataType.BYTES, (3,), [b"a", b"b"])])
    assert error.code is ErrorCode.INVALID_VALUE_COUNT
    assert "Expected: 3 values; Actual: 2 values; input name: s" in error.text


def test_huge_shape_is_a_content_size_error() -> None:
    spec = TensorSpec("x", FP32, Shape.of(-1, -1))
    error = failure([spec], [raw("x", FP32, 2**40, 2**40, nbytes=16)])
    assert error.code is ErrorCode.INVALID_CONTENT_SIZE


# --- the order of checks -----------------------------------------------------------------------


def test_count_comes_before_names() -> None:
    error = failure([DATA], [raw("a", DataType.FP16, 1), raw("b", DataType.FP16, 1)])
    assert error.code is ErrorCode.INVALID_NO_OF_INPUTS


def test_missing_comes_before_anything_about_the_tensor() -> None:
    assert failure([DATA], [raw("x", DataType.INT8, 0)]).code is ErrorCode.INVALID_MISSING_INPUT


def test_zero_dimension_comes_before_precision() -> None:
    error = failure([DATA], [raw("data", DataType.INT8, 1, 3, 0, 300)])
    assert error.code is ErrorCode.INVALID_SHAPE
    assert "Negative or zero" in error.text


def test_precision_comes_before_rank() -> None:
    assert failure([DATA], [raw("data", DataType.INT8, 1)]).code is ErrorCode.INVALID_PRECISION


def test_rank_comes_before_batch() -> None:
    error = failure([DATA], [raw("data", FP32, 7, 3, 300)])
    assert error.code is ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS


def test_batch_comes_before_other_dimensions() -> None:
    error = failure([DATA], [raw("data", FP32, 2, 3, 900, 900)])
    assert error.code is ErrorCode.INVALID_BATCH_SIZE


def test_shape_comes_before_content_size() -> None:
    error = failure([DATA], [raw("data", FP32, 1, 3, 900, 900, nbytes=3)])
    assert error.code is ErrorCode.INVALID_SHAPE


def test_inputs_are_checked_in_model_order() -> None:
    specs = [TensorSpec("a", FP32, Shape.of(1)), TensorSpec("b", FP32, Shape.of(2))]
    error = failure(specs, [raw("b", FP32, 3), raw("a", DataType.INT32, 1)])
    assert error.code is ErrorCode.INVALID_PRECISION
    assert "input name: a" in error.text


# --- batch dimension from the layout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "rank", "expected"),
    [(None, 4, 0), ("NCHW", 4, 0), ("CN", 2, 1), ("N...", 3, 0), ("HWC", 3, 0), (None, 0, None)],
)
def test_batch_index(layout: str | None, rank: int, expected: int | None) -> None:
    spec = TensorSpec("x", FP32, Shape.of(*([1] * rank)), layout)
    assert batch_index(spec) == expected


def test_batch_follows_the_layout() -> None:
    spec = TensorSpec("x", FP32, Shape.of(3, 1), "CN")
    error = failure([spec], [raw("x", FP32, 3, 2)])
    assert error.text == "Invalid input batch size - Expected: 1; Actual: 2; input name: x"


# --- accepted requests -------------------------------------------------------------------------


def test_raw_buffer_becomes_an_array_of_the_request_shape() -> None:
    values = np.arange(1 * 3 * 200 * 250, dtype=np.float32)
    tensor = RequestTensor("data", FP32, (1, 3, 200, 250), values.tobytes())
    arrays = validate_inputs([DATA], [tensor])
    assert arrays["data"].shape == (1, 3, 200, 250)
    assert arrays["data"].dtype == np.float32
    np.testing.assert_array_equal(arrays["data"].reshape(-1), values)


def test_raw_buffer_is_not_copied() -> None:
    buffer = bytearray(np.arange(6, dtype=np.int32).tobytes())
    spec = TensorSpec("x", DataType.INT32, Shape.of(2, 3))
    array = validate_inputs(
        [spec], [RequestTensor("x", DataType.INT32, (2, 3), memoryview(buffer))]
    )["x"]
    buffer[0] = 42
    assert array[0, 0] == 42


def test_memoryview_is_accepted() -> None:
    spec = TensorSpec("x", DataType.INT16, Shape.of(2))
    data = memoryview(np.array([1, -2], np.int16).tobytes())
    array = validate_inputs([spec], [RequestTensor("x", DataType.INT16, (2,), data)])["x"]
    assert array.tolist() == [1, -2]


@pytest.mark.parametrize("datatype", [t for t in DataType if t is not DataType.BYTES])
def test_every_fixed_size_type_from_raw_and_typed(datatype: DataType) -> None:
    spec = TensorSpec("x", datatype, Shape.of(-1, 2))
    values = np.array([[0, 1], [1, 0]]).astype(datatype.numpy_dtype)
    from_raw = validate_inputs([spec], [RequestTensor("x", datatype, (2, 2), values.tobytes())])
    from_typed = validate_inputs([spec], [typed("x", values.reshape(-1), (2, 2))])
    for arrays in (from_raw, from_typed):
        assert arrays["x"].dtype == datatype.numpy_dtype
        np.testing.assert_array_equal(arrays["x"], values)


def test_bytes_input_becomes_an_object_array() -> None:
    spec = TensorSpec("s", DataType.BYTES, Shape.of(-1))
    arrays = validate_inputs([spec], [RequestTensor("s", DataType.BYTES, (2,), [b"ab", b""])])
    assert arrays["s"].dtype == np.object_
    assert arrays["s"].tolist() == [b"ab", b""]


def test_scalar_input() -> None:
    spec = TensorSpec("s", FP32, Shape(()))
    arrays = validate_inputs([spec], [RequestTensor("s", FP32, (), np.float32(2.5).tobytes())])
    assert arrays["s"].shape == ()
    assert float(arrays["s"]) == 2.5


def test_inputs_in_any_request_order() -> None:
    specs = [TensorSpec("a", FP32, Shape.of(1)), TensorSpec("b", DataType.INT64, Shape.of(2))]
    arrays = validate_inputs(specs, [raw("b", DataType.INT64, 2), raw("a", FP32, 1)])
    assert list(arrays) == ["a", "b"]


def test_range_bounds_are_inclusive() -> None:
    for sizes in ((1, 3, 200, 500), (1, 3, 500, 200)):
        assert validate_inputs([DATA], [raw("data", FP32, *sizes)])["data"].shape == sizes


# --- outputs -----------------------------------------------------------------------------------


def test_requested_outputs() -> None:
    outputs = [TensorSpec("prob", FP32, Shape.of(1)), TensorSpec("box", FP32, Shape.of(4))]
    validate_outputs(outputs, None)
    validate_outputs(outputs, ["box"])
    validate_outputs(outputs, [])
    with pytest.raises(InvalidInput) as caught:
        validate_outputs(outputs, ["box", "nope"])
    assert caught.value.code is ErrorCode.INVALID_OUTPUT
    assert caught.value.text == "Invalid output name - Output name: nope"
