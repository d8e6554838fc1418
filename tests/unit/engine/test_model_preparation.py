"""Preparing a read model: OVMS's preprocessing steps in order, and plain-word shape errors.

Real OpenVINO on models built here (no sockets).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from ovserve.config.layout import parse_layout_param
from ovserve.config.model_config import ModelConfig
from ovserve.config.preprocessing import parse_preprocessing
from ovserve.config.shape import parse_shape_param
from ovserve.engine.model_preparation import apply_preprocessing, apply_shape
from ovserve.engine.native_stderr import captured_native_stderr
from ovserve.errors import ConfigError

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
SCALE = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def passthrough(shape: tuple[int, ...] = (1, 3, -1, -1), inputs: int = 1) -> ov.Model:
    """``out_i = data_i * 1`` on NCHW f32 inputs."""
    params, results = [], []
    for index in range(inputs):
        param = ops.parameter(ov.PartialShape(list(shape)), np.float32, name=f"data{index}")
        param.output(0).get_tensor().set_names({f"data{index}"})
        out = ops.multiply(param, ops.constant(np.float32(1.0)))
        out.output(0).get_tensor().set_names({f"out{index}"})
        params.append(param)
        results.append(out)
    return ov.Model(results, params, "passthrough")


def config(**options: Any) -> ModelConfig:
    layout = options.pop("layout", None)
    shape = options.pop("shape", None)
    return ModelConfig(
        name="m",
        base_path=Path("."),
        layout=parse_layout_param(layout) if layout else {},
        shape=parse_shape_param(shape) if shape else {},
        preprocessing=parse_preprocessing(**options),
    )


def run(model: ov.Model, data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.asarray(compiled.create_infer_request().infer([data])[0])


def test_the_demo_pipeline_equals_numpy() -> None:
    demo = config(
        layout="NHWC:NCHW",
        shape="(1,8,6,3)",
        mean="[123.675,116.28,103.53]",
        scale="[58.395,57.12,57.375]",
        color_format="BGR:RGB",
        precision="uint8:fp32",
    )
    model = apply_preprocessing(passthrough(), demo)
    apply_shape(model, demo)
    (port,) = model.inputs
    assert port.get_element_type() == ov.Type.u8
    assert port.get_partial_shape() == ov.PartialShape([1, 8, 6, 3])
    assert ov.layout_helpers.get_layout(port).to_string() == "[N,H,W,C]"
    bgr = np.random.default_rng(0).integers(0, 256, (1, 8, 6, 3), dtype=np.uint8)
    expected = ((bgr[..., ::-1].astype(np.float32) - MEAN) / SCALE).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(run(model, bgr), expected, rtol=1e-6, atol=1e-5)


def test_scalar_mean_and_scale_without_colour_or_type() -> None:
    model = apply_preprocessing(
        passthrough((1, 3, 2, 2)), config(layout="NCHW", mean="1", scale="2")
    )
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    np.testing.assert_allclose(run(model, data), (data - 1) / 2)


def test_nothing_to_do_returns_the_model_itself() -> None:
    model = passthrough()
    assert apply_preprocessing(model, config()) is model


def test_preprocessing_needs_a_single_input() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_preprocessing(passthrough(inputs=2), config(mean="1"))
    assert caught.value.text == (
        "Model m: mean, scale, color_format and precision apply to a model's only input, "
        "and this model has 2 inputs"
    )


def test_a_mean_per_channel_that_does_not_fit_is_a_load_error() -> None:
    with pytest.raises(ConfigError) as caught:
        apply_preprocessing(passthrough(), config(layout="NHWC:NCHW", mean="[1,2,3,4]"))
    assert caught.value.text.startswith("Model m: cannot ")


def test_wrong_rank_shape_in_plain_words() -> None:
    conv_weights = ops.constant(np.ones((2, 3, 3, 3), dtype=np.float32))
    param = ops.parameter(ov.PartialShape([1, 3, -1, -1]), np.float32, name="data")
    param.output(0).get_tensor().set_names({"data"})
    conv = ops.convolution(param, conv_weights, [1, 1], [0, 0], [0, 0], [1, 1])
    model = ov.Model([conv], [param], "conv")
    with pytest.raises(ConfigError) as caught:
        apply_shape(model, config(shape="(1,3,224)"))
    assert caught.value.text == (
        "OV does not support reshaping model: m with provided shape (1,3,224): input data has "
        "4 dimensions (1,3,-1,-1), the shape given has 3"
    )


def test_native_stderr_is_captured_and_can_pass_through(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with captured_native_stderr() as captured:
        os.write(2, b"parser noise\n")
    assert captured.text == "parser noise\n"
    assert capfd.readouterr().err == ""
    captured.pass_through()
    sys.stderr.flush()
    assert capfd.readouterr().err == "parser noise\n"


@pytest.mark.parametrize(
    ("color_format", "names"),
    [
        ("BGR:NV12", ["data0"]),
        ("RGB:NV12_2", ["data0/y", "data0/uv"]),
        ("BGR:I420_3", ["data0/y", "data0/u", "data0/v"]),
    ],
)
def test_planar_colour_formats_name_their_planes(color_format: str, names: list[str]) -> None:
    options = config(layout="NHWC:NCHW", color_format=color_format, precision="uint8:fp32")
    model = apply_preprocessing(passthrough(), options)
    assert [port.get_any_name() for port in model.inputs] == names
    assert all(port.get_element_type() == ov.Type.u8 for port in model.inputs)
