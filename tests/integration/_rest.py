"""Helpers for the REST integration tests: plain HTTP calls, images, Prometheus text."""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import requests

from _image_oracle import bilinear_resize, decode_bgr

TIMEOUT = 30.0
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def post(url: str, body: bytes | str, **headers: str) -> requests.Response:
    """POST raw bytes with no Content-Type unless given (as tritonclient.http does)."""
    data = body.encode() if isinstance(body, str) else body
    return requests.post(url, data=data, headers=headers, timeout=TIMEOUT)


def get(url: str) -> requests.Response:
    """GET."""
    return requests.get(url, timeout=TIMEOUT)


def error_of(response: requests.Response) -> str:
    """The ``{"error": ...}`` text of a failed call (asserting the body has that shape)."""
    document = response.json()
    assert set(document) == {"error"}, document
    return str(document["error"])


def still_serves(base_url: str, model: str) -> None:
    """The server answers health and metadata after a bad request."""
    assert get(f"{base_url}/v2/health/live").status_code == 200
    assert get(f"{base_url}/v2/models/{model}").status_code == 200


def make_image(height: int, width: int, channels: int = 3, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A smooth synthetic BGR (or gray) picture: JPEG keeps its structure."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack(
        [(xs * 255 / width), (ys * 255 / height), ((xs + ys) * 127 / (height + width))], axis=-1
    )
    pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return pixels[:, :, :1] if channels == 1 else pixels[:, :, :channels]


def encode(pixels: npt.NDArray[Any], ext: str) -> bytes:
    """JPEG/PNG bytes of an image."""
    ok, buffer = cv2.imencode(ext, pixels)
    assert ok
    return bytes(buffer)


def as_model_input(encoded: bytes, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """What an encoded image should become for an FP32 NHWC input of ``size`` (h, w).

    Computed independently of the server (Pillow decode, numpy bilinear resize: see
    ``tests/_image_oracle.py``); it matches OpenCV's float32 resize to about 1e-5.
    """
    height, width = size
    resized = bilinear_resize(decode_bgr(encoded), height, width)
    return resized.astype(np.float32)[np.newaxis]


def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """``/metrics`` as {(name, labels): value}."""
    response = get(f"{base_url}/metrics")
    assert response.status_code == 200, response.text
    samples = {}
    for line in response.text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, line
        labels = frozenset(_LABEL.findall(match.group("labels") or ""))
        samples[(match.group("name"), labels)] = float(match.group("value"))
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], family: str, /, **labels: str
) -> float:
    """One sample's value (0 when absent)."""
    return samples.get((family, frozenset(labels.items())), 0.0)
