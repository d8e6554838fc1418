"""Encoded images (JPEG/PNG sent as BYTES) decoded into the tensors a model expects.

Placeholder hook: inputs pass through unchanged until image decoding is implemented.
"""

from __future__ import annotations

from collections.abc import Sequence

from ovserve.engine.base import TensorSpec
from ovserve.tensors import RequestTensor


def decode_binary_inputs(
    specs: Sequence[TensorSpec], tensors: Sequence[RequestTensor]
) -> Sequence[RequestTensor]:
    """Replace BYTES inputs aimed at image inputs by decoded tensors; others pass through."""
    return tensors
