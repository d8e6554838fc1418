"""The execution-mode decision on real (tiny) OpenVINO models: who is compiled for latency.

The decision comes from the model (an operation count), so it must not move with the load on
the machine: one test loads a model near the limit with and without CPU burners running.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
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


def _conv(shape: list[object], filters: int = 64, layers: int = 6) -> ov.Model:
    x = ops.parameter(ov.PartialShape(shape), np.float32, name="x")
    node = ops.convolution(
        x, ops.constant(np.ones((filters, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1]
    )
    for _ in range(layers):
        weights = ops.constant(np.full((filters, filters, 3, 3), 0.01, np.float32))
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


def test_probe_shapes_batch_1_and_image_like_free_dims_within_ranges() -> None:
    model = _conv([-1, 3, ov.Dimension(100, 200), ov.Dimension(300, 400)], layers=0)
    assert latency_probe.probe_shapes(model) == [(1, 3, 200, 300)]


def test_operations_counted_by_hand() -> None:
    # conv: 4 filters of 3x3 over 3 channels, padded: out [1,4,8,8] = 256 elements, each
    # 27 multiply-adds; relu writes 256 more; every written element counts 4.
    x = ops.parameter(ov.PartialShape([1, 3, -1, -1]), np.float32, name="x")
    conv = ops.convolution(
        x, ops.constant(np.ones((4, 3, 3, 3), np.float32)), [1, 1], [1, 1], [1, 1], [1, 1]
    )
    model = ov.Model([ops.relu(conv)], [x])
    assert latency_probe.estimate_ops(model, [(1, 3, 8, 8)]) == 256 * 27 + 4 * (256 + 256)
    # matmul [1,16] x [16,4]: 4 outputs of 16 multiply-adds, then relu.
    assert latency_probe.estimate_ops(_tiny([-1, 16]), [(1, 16)]) == 4 * 16 + 4 * (4 + 4)


def test_estimating_leaves_the_model_dynamic() -> None:
    model = _tiny([-1, 16])
    latency_probe.decide(model)
    assert model.is_dynamic()


def test_a_model_of_unknown_cost_keeps_throughput() -> None:
    x = ops.parameter(ov.PartialShape.dynamic(), np.float32, name="x")
    decision = latency_probe.decide(ov.Model([ops.relu(x)], [x]))
    assert not decision.latency
    assert "input x has a dynamic rank" in decision.reason


def test_load_steps_are_reported_in_order(tmp_path: Path) -> None:
    path = _save(_tiny([-1, 16]), tmp_path)
    steps: list[str] = []
    compiled = OpenVINOEngine().load(path, ModelConfig("tiny", tmp_path), steps.append)
    compiled.close()
    assert steps == ["read", "reshape", "probe", "compile"]


def test_short_model_is_compiled_for_latency(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _save(_tiny([-1, 16]), tmp_path)
    with caplog.at_level(logging.INFO, "ovserve.engine"):
        compiled = OpenVINOEngine().load(path, ModelConfig("tiny", tmp_path))
    try:
        assert (compiled.nireq, compiled.streams) == (1, 1)
    finally:
        compiled.close()
    assert "Model tiny: compiled for latency on one thread" in caplog.text
    assert "about 96 operations per inference at input shape [1, 16]" in caplog.text


def _pinning(compiled: object) -> bool:
    """ENABLE_CPU_PINNING of the OpenVINO model under ovserve's wrapper (dynamic or static)."""
    served = getattr(compiled, "_dynamic", compiled)
    return bool(served._compiled.get_property("ENABLE_CPU_PINNING"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("plugin_config", "pinned"), [({}, False), ({"ENABLE_CPU_PINNING": True}, True)]
)
def test_latency_model_is_not_pinned_unless_plugin_config_asks(
    tmp_path: Path, plugin_config: dict[str, bool], pinned: bool
) -> None:
    # Its inference runs on the event loop's thread: pinning would bind the loop to one core.
    path = _save(_tiny([-1, 16]), tmp_path)
    compiled = OpenVINOEngine().load(
        path, ModelConfig("tiny", tmp_path, plugin_config=plugin_config)
    )
    try:
        assert compiled.streams == 1
        assert _pinning(compiled) is pinned
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


@pytest.fixture
def cpu_burners() -> Iterator[None]:
    """One busy-looping process per core for the duration of a test."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def _load_twice(path: Path, folder: Path) -> list[tuple[int, int]]:
    engine = OpenVINOEngine()
    outcomes = []
    for _ in range(2):
        compiled = engine.load(path, ModelConfig("conv", folder))
        outcomes.append((compiled.nireq, compiled.streams))
        compiled.close()
    return outcomes


def _mode_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "compiled for" in record.message]


def test_decision_is_the_same_on_an_idle_and_a_busy_machine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    # A conv whose inference takes about 0.5 ms here: timing it flipped the decision with load.
    path = _save(_conv([1, 3, -1, -1], filters=4, layers=0), tmp_path)
    with caplog.at_level(logging.INFO, "ovserve.engine"):
        idle = _load_twice(path, tmp_path)
        idle_lines = _mode_lines(caplog)
        caplog.clear()
        request.getfixturevalue("cpu_burners")
        busy = _load_twice(path, tmp_path)
        busy_lines = _mode_lines(caplog)
    assert idle == busy
    assert idle_lines == busy_lines
    assert len(idle_lines) == 2
