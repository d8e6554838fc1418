"""A second implementation of what the server does to an encoded image, for test oracles.

The server decodes with OpenCV and resizes with ``cv2.resize`` (INTER_LINEAR), as OVMS does. An
oracle built from the same calls would agree with any mistake in them, so the tests decode with
Pillow and resize with the numpy function below, written from OpenCV's documented bilinear
interpolation (geometric transformations docs, ``INTER_LINEAR``; the same half-pixel mapping as
``imgproc/src/resize.cpp``): destination pixel ``d`` samples the source at
``s = (d + 0.5) * in / out - 0.5``, clamped to ``[0, in - 1]``, blending the two neighbours
``floor(s)`` and ``min(floor(s) + 1, in - 1)`` with weights ``1 - f`` and ``f``; rows then columns,
per channel. In float64 it matches OpenCV's float32 resize to about 1e-5 on 0..255 values.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


def decode_bgr(data: bytes) -> npt.NDArray[np.uint8]:
    """JPEG/PNG bytes as HWC uint8 in OpenCV's channel order (BGR, BGRA, or one gray channel)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("L", "RGB", "RGBA"):
            pixels = np.asarray(image)
        else:
            pixels = np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))
    if pixels.ndim == 2:
        return pixels[:, :, np.newaxis]
    order = [2, 1, 0, 3][: pixels.shape[2]]
    return np.ascontiguousarray(pixels[:, :, order])


def _taps(size_out: int, size_in: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any], Any]:
    source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    source = np.clip(source, 0, size_in - 1)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, source - low


def bilinear_resize(image: npt.NDArray[Any], height: int, width: int) -> npt.NDArray[np.float64]:
    """HWC ``image`` resized to ``height`` x ``width`` (float64)."""
    pixels = image.astype(np.float64)
    y0, y1, fy = _taps(height, pixels.shape[0])
    x0, x1, fx = _taps(width, pixels.shape[1])
    fx = fx[np.newaxis, :, np.newaxis]
    fy = fy[:, np.newaxis, np.newaxis]
    top = pixels[y0][:, x0] * (1 - fx) + pixels[y0][:, x1] * fx
    bottom = pixels[y1][:, x0] * (1 - fx) + pixels[y1][:, x1] * fx
    resized: npt.NDArray[np.float64] = top * (1 - fy) + bottom * fy
    return resized
