"""Encoded images decoded per OVMS's rules: layout, resize targets, channels, batch, precision."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from ovserve.config.shape import Dimension, Shape
from ovserve.errors import ErrorCode, InvalidInput
from ovserve.serving.binary_inputs import decode_binary_inputs
from ovserve.tensors import DataType, RequestTensor, TensorSpec

from _image_oracle import bilinear_resize, decode_bgr

RNG = np.random.default_rng(3)


def image(height: int, width: int, channels: int = 3) -> npt.NDArray[np.uint8]:
    return RNG.integers(0, 256, (height, width, channels), dtype=np.uint8)


def encode(pixels: npt.NDArray[Any], ext: str = ".png") -> bytes:
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return bytes(buffer)


def spec(
    *dims: int | Dimension,
    layout: str | None = "NHWC",
    datatype: DataType = DataType.FP32,
) -> TensorSpec:
    return TensorSpec("img", datatype, Shape.of(*dims), layout)


def images(*encoded: bytes, shape: tuple[int, ...] | None = None) -> RequestTensor:
    return RequestTensor("img", DataType.BYTES, shape or (len(encoded),), list(encoded))


def decode(target: TensorSpec, tensor: RequestTensor) -> RequestTensor:
    (decoded,) = asyncio.run(decode_binary_inputs([target], [tensor]))
    return decoded


def error_of(target: TensorSpec, tensor: RequestTensor) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        decode(target, tensor)
    return caught.value


def array_of(tensor: RequestTensor) -> npt.NDArray[Any]:
    assert isinstance(tensor.data, np.ndarray)
    return tensor.data


def test_requests_without_bytes_pass_through_untouched() -> None:
    tensors: Sequence[RequestTensor] = [RequestTensor("img", DataType.FP32, (1,), b"\0\0\0\0")]
    assert asyncio.run(decode_binary_inputs([spec(1, 2, 2, 3)], tensors)) is tensors


def test_bytes_for_a_bytes_input_pass_through() -> None:
    strings = [RequestTensor("t", DataType.BYTES, (1,), [b"text"])]
    target = TensorSpec("t", DataType.BYTES, Shape.of(-1))
    assert asyncio.run(decode_binary_inputs([target], strings)) is strings


def test_static_size_is_resized_to_in_model_precision() -> None:
    pixels = image(8, 10)
    decoded = decode(spec(1, 4, 6, 3), images(encode(pixels)))
    assert (decoded.datatype, decoded.shape) == (DataType.FP32, (1, 4, 6, 3))
    expected = bilinear_resize(decode_bgr(encode(pixels)), 4, 6)
    np.testing.assert_allclose(array_of(decoded)[0], expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("source", "target"), [((48, 40), (32, 32)), ((20, 24), (32, 32)), ((7, 9), (30, 3))]
)
def test_resize_matches_an_independent_bilinear(
    source: tuple[int, int], target: tuple[int, int]
) -> None:
    png = encode(image(*source))
    decoded = decode(spec(1, *target, 3), images(png))
    expected = bilinear_resize(decode_bgr(png), *target)
    np.testing.assert_allclose(array_of(decoded)[0], expected, rtol=0, atol=1e-4)


def test_jpeg_decodes_to_bgr_like_pillow() -> None:
    pixels = image(16, 16)
    jpeg = encode(pixels, ".jpg")
    decoded = decode(spec(1, 16, 16, 3, datatype=DataType.UINT8), images(jpeg))
    np.testing.assert_array_equal(array_of(decoded)[0], decode_bgr(jpeg))


def test_dynamic_size_keeps_the_image_size() -> None:
    pixels = image(7, 9)
    decoded = decode(spec(-1, -1, -1, 3), images(encode(pixels), encode(pixels)))
    assert decoded.shape == (2, 7, 9, 3)
    np.testing.assert_array_equal(array_of(decoded)[1], pixels.astype(np.float32))


def test_dynamic_size_needs_one_resolution_per_batch() -> None:
    error = error_of(spec(-1, -1, -1, 3), images(encode(image(7, 9)), encode(image(9, 7))))
    assert error.code is ErrorCode.BINARY_IMAGES_RESOLUTION_MISMATCH
    assert error.text.startswith(
        "Binary input images for this endpoint are required to have the same resolution"
    )


def test_ranges_clamp_to_the_nearest_bound_from_the_first_image() -> None:
    dims = (1, Dimension.range(10, 20), Dimension.range(10, 20), 3)
    assert decode(spec(*dims), images(encode(image(5, 30)))).shape == (1, 10, 20, 3)
    assert decode(spec(*dims), images(encode(image(15, 12)))).shape == (1, 15, 12, 3)
    batch = images(encode(image(15, 12)), encode(image(30, 30)))
    assert decode(spec(-1, *dims[1:]), batch).shape == (2, 15, 12, 3)


@pytest.mark.parametrize(
    ("channels", "pixels"),
    [(3, image(4, 4, 1)), (1, image(4, 4, 3)), (3, image(4, 4, 4))],
)
def test_channel_count_must_fit(channels: int, pixels: npt.NDArray[np.uint8]) -> None:
    error = error_of(spec(1, 4, 4, channels), images(encode(pixels)))
    assert error.code is ErrorCode.INVALID_NO_OF_CHANNELS
    assert error.text.startswith("Invalid number of channels in binary input")


def test_any_channel_count_follows_the_first_image() -> None:
    gray = decode(spec(1, 4, 4, -1), images(encode(image(4, 4, 1))))
    assert gray.shape == (1, 4, 4, 1)
    mixed = images(encode(image(4, 4, 1)), encode(image(4, 4, 3)))
    assert error_of(spec(2, 4, 4, -1), mixed).code is ErrorCode.INVALID_NO_OF_CHANNELS


@pytest.mark.parametrize(
    ("dims", "layout"),
    [((1, 3, 4, 4), "NCHW"), ((1, 3, -1, -1), None), ((1, 3, 224, 224), None)],
)
def test_nchw_inputs_are_unsupported(dims: tuple[int, ...], layout: str | None) -> None:
    error = error_of(spec(*dims, layout=layout), images(encode(image(4, 4))))
    assert error.code is ErrorCode.UNSUPPORTED_LAYOUT
    assert error.text.startswith(
        "Received binary image input but resource not configured to accept NHWC layout"
    )
    assert "--layout NHWC:NCHW" in error.text


@pytest.mark.parametrize("layout", [None, "N...", "NHWC", "??WC", "N...C"])
def test_layouts_compatible_with_nhwc(layout: str | None) -> None:
    assert decode(spec(1, 4, 4, 3, layout=layout), images(encode(image(4, 4)))).shape == (
        1,
        4,
        4,
        3,
    )


@pytest.mark.parametrize("payload", [b"not an image", b""])
def test_non_images_fail_to_parse(payload: bytes) -> None:
    error = error_of(spec(1, 4, 4, 3), images(payload))
    assert error.code is ErrorCode.IMAGE_PARSING_FAILED
    assert error.text.startswith("Image parsing failed - image 0")


def test_batch_must_fit_the_model_and_the_request_shape() -> None:
    two = [encode(image(4, 4)), encode(image(4, 4))]
    assert error_of(spec(1, 4, 4, 3), images(*two)).code is ErrorCode.INVALID_BATCH_SIZE
    assert error_of(spec(-1, 4, 4, 3), images(*two, shape=(3,))).code is (
        ErrorCode.INVALID_BATCH_SIZE
    )
    assert error_of(spec(-1, 4, 4, 3), images(*two, shape=(1, 2))).code is (
        ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS
    )


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        (DataType.UINT8, np.uint8),
        (DataType.INT8, np.int8),
        (DataType.FP16, np.float16),
        (DataType.FP64, np.float64),
        (DataType.INT32, np.int32),
    ],
)
def test_precisions(datatype: DataType, dtype: type[np.generic]) -> None:
    pixels = np.full((2, 2, 3), 200, np.uint8)
    decoded = array_of(decode(spec(1, 2, 2, 3, datatype=datatype), images(encode(pixels))))
    assert decoded.dtype == dtype
    # INT8 saturates, as OpenCV's convertTo does.
    assert decoded.max() == (127 if datatype is DataType.INT8 else 200)


def test_unsupported_precision() -> None:
    error = error_of(spec(1, 2, 2, 3, datatype=DataType.INT64), images(encode(image(2, 2))))
    assert error.code is ErrorCode.INVALID_PRECISION


def test_strings_to_a_2d_uint8_input_become_padded_rows() -> None:
    target = TensorSpec("t", DataType.UINT8, Shape.of(-1, -1))
    strings = RequestTensor("t", DataType.BYTES, (2,), [b"ab", b"xyz"])
    (rows,) = asyncio.run(decode_binary_inputs([target], [strings]))
    assert rows.shape == (2, 4)
    assert array_of(rows).tolist() == [[97, 98, 0, 0], [120, 121, 122, 0]]
