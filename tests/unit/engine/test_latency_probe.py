"""The latency probe on real (tiny) OpenVINO models: who gets recompiled for latency."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovserve.config.model_config import ModelConfig
from ovserve.engine import latency_probe
from ovserve.engine.openvino_engine import OpenVINOEngine

from _skips import unavailable


def _save(model: ov.Model, folder: Path) -> Path:
    path = folder / "model.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def _tiny(shape: list[int]) -> ov.Model:
    x = ops.parameter(shape, np.float32, name="x")
    weights = ops.constant(np.ones((shape[-1], 4), np.float32))
    return ov.Model([ops.relu(ops.matmul(x, weights, False, False))], [x])


def _conv(shape: list[object]) -> ov.Model:
    x = ops.parameter(ov.PartialShape(shape), np.float32, name="x")
    node = ops.convolution(
        x, ops.constant(np.ones((64, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1]
    )
    for _ in range(6):
        weights = ops.constant(np.full((64, 64, 3, 3), 0.01, np.float32))
        node = ops.relu(ops.convolution(node, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([node], [x])


@pytest.mark.parametrize(
    ("config", "device", "expected"),
    [
        ({}, "CPU", True),
        ({"INFERENCE_PRECISION_HINT": "f32"}, "CPU", True),
        ({"PERFORMANCE_HINT": "THROUGHPUT"}, "CPU", False),
        ({"NUM_STREAMS": "2"}, "CPU", False),
        ({"INFERENCE_NUM_THREADS": 2}, "CPU", False),
        ({}, "GPU", False),
    ],
)
def test_may_tune_only_when_the_user_did_not_choose(
    config: dict[str, object], device: str, expected: bool
) -> None:
    assert latency_probe.may_tune(config, device) is expected


def test_probe_sizes_batch_1_and_image_like_free_dims() -> None:
    model = _conv([-1, 3, ov.Dimension(100, 200), ov.Dimension(300, 400)])
    compiled = ov.Core().compile_model(model, "CPU")
    (array,) = latency_probe.probe_inputs(compiled) or []
    assert array.shape == (1, 3, 200, 300)
    assert latency_probe.median_inference_us(compiled) is not None


def test_short_model_is_compiled_for_latency(tmp_path: Path) -> None:
    path = _save(_tiny([-1, 16]), tmp_path)
    compiled = OpenVINOEngine().load(path, ModelConfig("tiny", tmp_path))
    try:
        assert (compiled.nireq, compiled.streams) == (1, 1)
    finally:
        compiled.close()


def needs_two_cores() -> None:
    if (os.cpu_count() or 1) < 2:
        unavailable("one-core", "THROUGHPUT gives one stream on one core")


def test_user_hint_is_kept_for_a_short_model(tmp_path: Path) -> None:
    needs_two_cores()
    path = _save(_tiny([-1, 16]), tmp_path)
    config = ModelConfig("tiny", tmp_path, plugin_config={"PERFORMANCE_HINT": "THROUGHPUT"})
    compiled = OpenVINOEngine().load(path, config)
    try:
        assert compiled.streams > 1
    finally:
        compiled.close()


def test_compute_bound_model_keeps_throughput_streams(tmp_path: Path) -> None:
    needs_two_cores()
    path = _save(_conv([1, 3, -1, -1]), tmp_path)
    compiled = OpenVINOEngine().load(path, ModelConfig("conv", tmp_path))
    try:
        assert compiled.streams > 1
    finally:
        compiled.close()
