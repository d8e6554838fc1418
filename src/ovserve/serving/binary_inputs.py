"""Encoded images (JPEG/PNG sent as BYTES) decoded into the tensors a model expects.

OVMS's rules (``tensor_conversion.cpp``), for a BYTES request tensor aimed at a non-BYTES input:

- rank-4 input: each element is an image; the input must take ``N...HWC`` (``--layout
  NHWC:NCHW`` for NCHW models, else ``UNSUPPORTED_LAYOUT``); the request shape is ``[N]``.
  OpenCV decodes to HWC in BGR order, converted to the input's precision. A static H/W is
  resized to; a range takes the first image's size clamped to the nearest bound; ``-1`` keeps
  the image size, and then every image of the batch must have the first one's resolution.
  The channel count must fit C (a ``-1`` C takes the first image's count).
- rank-2 UINT8 input: the strings become a ``[N, longest + 1]`` zero-padded array.

Decoding runs in a worker thread, and only for requests that carry BYTES inputs.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt

from ovserve.config.shape import Dimension, format_sizes
from ovserve.errors import ErrorCode, InvalidInput, ShapeMismatch
from ovserve.tensors import DataType, RequestTensor, TensorSpec

MAX_IMAGE_PIXELS: Final = 1 << 26
"""Largest decoded image (64 Mpixel, e.g. 8192x8192): a small PNG must not expand to gigabytes."""


@functools.cache
def _cv2() -> Any:
    """OpenCV, imported on the first image: it adds ~37 MiB to a process that never sees one."""
    # OpenCV reads this once, when it first decodes; it must be set before cv2 is imported.
    os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))
    import cv2

    return cv2


_IMAGE_TYPES: Final = frozenset(
    {
        DataType.FP32,
        DataType.FP64,
        DataType.FP16,
        DataType.INT8,
        DataType.UINT8,
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
    }
)
"""Precisions OVMS converts images to."""

_CHANNEL_COUNTS: Final = frozenset({1, 2, 3, 4})


async def decode_binary_inputs(
    specs: Sequence[TensorSpec], tensors: Sequence[RequestTensor]
) -> Sequence[RequestTensor]:
    """Replace BYTES inputs aimed at image (or 2-D UINT8) inputs by decoded tensors."""
    for tensor in tensors:
        if tensor.datatype is DataType.BYTES:
            break
    else:
        return tensors
    by_name = {spec.name: spec for spec in specs}
    if not any(_convertible(by_name.get(tensor.name), tensor) for tensor in tensors):
        return tensors
    return await asyncio.to_thread(_convert_all, by_name, tensors)


def _convertible(spec: TensorSpec | None, tensor: RequestTensor) -> bool:
    return (
        spec is not None
        and tensor.datatype is DataType.BYTES
        and spec.datatype is not DataType.BYTES
        and isinstance(tensor.data, list)
        and (spec.shape.rank == 4 or (spec.shape.rank == 2 and spec.datatype is DataType.UINT8))
    )


def _convert_all(
    by_name: dict[str, TensorSpec], tensors: Sequence[RequestTensor]
) -> list[RequestTensor]:
    converted = []
    for tensor in tensors:
        spec = by_name.get(tensor.name)
        if spec is None or not _convertible(spec, tensor):
            converted.append(tensor)
        elif spec.shape.rank == 4:
            converted.append(decode_images(spec, tensor))
        else:
            converted.append(strings_to_rows(spec, tensor))
    return converted


def strings_to_rows(spec: TensorSpec, tensor: RequestTensor) -> RequestTensor:
    """BYTES elements as a ``[N, longest + 1]`` UINT8 array, zero-padded (OVMS's 2-D strings)."""
    values: list[bytes] = list(tensor.data)  # type: ignore[arg-type]
    width = max((len(value) for value in values), default=0) + 1
    rows = np.zeros((len(values), width), dtype=np.uint8)
    for index, value in enumerate(values):
        rows[index, : len(value)] = np.frombuffer(value, dtype=np.uint8)
    return RequestTensor(spec.name, DataType.UINT8, rows.shape, rows)


def decode_images(spec: TensorSpec, tensor: RequestTensor) -> RequestTensor:
    """Decode, check and resize a batch of encoded images for an NHWC input."""
    name = spec.name
    check_layout(spec)
    images: list[bytes] = list(tensor.data)  # type: ignore[arg-type]
    _check_request_shape(spec, tensor, len(images))
    if spec.datatype not in _IMAGE_TYPES:
        raise InvalidInput(
            f"Expected: {spec.datatype.value}; Actual: binary image; input name: {name}",
            ErrorCode.INVALID_PRECISION,
        )
    _, height, width, channels = spec.shape.dims
    resizable = not (height.is_any or width.is_any)
    decoded: list[npt.NDArray[Any]] = []
    target: tuple[int, int] = (0, 0)
    for index, data in enumerate(images):
        image = _decode(data, name, index)
        if decoded:
            _check_like_first(image, decoded[0], resizable, name)
        else:
            target = (_fit(height, image.shape[0]), _fit(width, image.shape[1]))
        _check_channels(channels, image, decoded[0] if decoded else None, name)
        decoded.append(_to_model(image, target, spec.datatype))
    batch = np.stack(decoded)
    return RequestTensor(name, spec.datatype, batch.shape, batch)


def check_layout(spec: TensorSpec) -> None:
    """The input must take ``N...HWC``; an unknown layout is taken as NHWC unless it looks NCHW."""
    if spec.layout is not None:
        compatible = _matches_nhwc(spec.layout)
    else:
        # No layout in the model: [1,3,H,W]-like shapes are NCHW, which images cannot feed.
        dims = spec.shape.dims
        compatible = not (
            dims[1].is_static
            and dims[1].lower in _CHANNEL_COUNTS
            and not (dims[3].is_static and dims[3].lower in _CHANNEL_COUNTS)
        )
    if not compatible:
        raise InvalidInput(
            f"input name: {spec.name}; layout: {spec.layout or 'NCHW (guessed from the shape)'}; "
            "serve the model with --layout NHWC:NCHW",
            ErrorCode.UNSUPPORTED_LAYOUT,
        )


def _matches_nhwc(layout: str) -> bool:
    if "..." in layout:
        head, _, tail = layout.partition("...")
        return "NHWC".startswith(head.replace("?", "")) and _matches_suffix(tail)
    return len(layout) == 4 and all(
        have in ("?", want) for have, want in zip(layout, "NHWC", strict=True)
    )


def _matches_suffix(tail: str) -> bool:
    return len(tail) <= 4 and all(
        have in ("?", want)
        for have, want in zip(tail, "NHWC"[len("NHWC") - len(tail) :], strict=True)
    )


def _check_request_shape(spec: TensorSpec, tensor: RequestTensor, count: int) -> None:
    name = spec.name
    if len(tensor.shape) != 1:
        raise ShapeMismatch(
            f"Expected: (N) for binary images; Actual: {format_sizes(tensor.shape)}; "
            f"input name: {name}",
            ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS,
        )
    if tensor.shape[0] != count:
        raise ShapeMismatch(
            f"Expected: {tensor.shape[0]} images; Actual: {count}; input name: {name}",
            ErrorCode.INVALID_BATCH_SIZE,
        )
    batch = spec.shape.dims[0]
    if count == 0 or not batch.match(count):
        raise ShapeMismatch(
            f"Expected: {batch}; Actual: {count}; input name: {name}", ErrorCode.INVALID_BATCH_SIZE
        )


def _decode(data: bytes, name: str, index: int) -> npt.NDArray[Any]:
    if not data:
        raise InvalidInput(
            f"image {index} is empty; input name: {name}", ErrorCode.IMAGE_PARSING_FAILED
        )
    try:
        cv2 = _cv2()
        image: npt.NDArray[Any] | None = cv2.imdecode(
            np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED
        )
    except _cv2().error:
        # Past MAX_IMAGE_PIXELS, or a header OpenCV refuses.
        image = None
    if image is None:
        raise InvalidInput(
            f"image {index} is not a JPEG or PNG OpenCV can decode (or it is larger than "
            f"{MAX_IMAGE_PIXELS} pixels); input name: {name}",
            ErrorCode.IMAGE_PARSING_FAILED,
        )
    return image if image.ndim == 3 else image[:, :, np.newaxis]


def _check_like_first(
    image: npt.NDArray[Any], first: npt.NDArray[Any], resizable: bool, name: str
) -> None:
    """Without a resize target, every image must have the first one's resolution."""
    if not resizable and image.shape[:2] != first.shape[:2]:
        raise InvalidInput(
            f"Expected: {first.shape[1]}x{first.shape[0]}; Actual: "
            f"{image.shape[1]}x{image.shape[0]}; input name: {name}",
            ErrorCode.BINARY_IMAGES_RESOLUTION_MISMATCH,
        )


def _check_channels(
    channels: Dimension, image: npt.NDArray[Any], first: npt.NDArray[Any] | None, name: str
) -> None:
    count = image.shape[2]
    expected = first.shape[2] if channels.is_any and first is not None else None
    if not channels.match(count) or (expected is not None and count != expected):
        want = expected if expected is not None else channels
        raise InvalidInput(
            f"Expected: {want}; Actual: {count}; input name: {name}",
            ErrorCode.INVALID_NO_OF_CHANNELS,
        )


def _fit(dim: Dimension, size: int) -> int:
    """The size to resize to: a static size, the image's own, or the nearest range bound."""
    if dim.is_static:
        return dim.lower
    if dim.match(size):
        return size
    if dim.upper is not None and size > dim.upper:
        return dim.upper
    return dim.lower


def _to_model(
    image: npt.NDArray[Any], target: tuple[int, int], datatype: DataType
) -> npt.NDArray[Any]:
    """Convert to the model precision, then resize (OVMS's order); HWC out."""
    dtype = datatype.numpy_dtype
    if dtype.kind == "f":
        # OpenCV cannot resize float16: work in float32 and narrow at the end.
        work = image.astype(np.float64 if datatype is DataType.FP64 else np.float32)
    else:
        limits = np.iinfo(dtype)
        work = np.clip(image, limits.min, limits.max).astype(dtype)
    if work.shape[:2] != target:
        height, width = target
        resized: npt.NDArray[Any] = _cv2().resize(cast(Any, work), (width, height))
        work = resized if resized.ndim == 3 else resized[:, :, np.newaxis]
    return work.astype(dtype, copy=False)
