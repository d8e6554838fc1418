"""The benchmark models and their requests: tiny and conv (as the peer kit builds them), face.

tiny and conv are the peer kit's models (../shared/peers/lib/make_models.py, the team's own kit),
rebuilt here from the same fixed seeds with onnx.helper, so they are byte-identical to the ones
Triton loads from the kit. face is the face-detection demo IR (demos/face_detection).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
FACE_IMAGE = ROOT / "demos" / "face_detection" / "images" / "city.jpg"
FACE_SIZES = ("300x300", "500x500", "600x400", "1280x720")  # W x H, as the demo client's flags


@dataclass(frozen=True)
class Request:
    """One request shape of one served model."""

    model: str  # served name
    input: str
    shape: tuple[int, ...]
    output: str
    out_shape: tuple[int, ...]
    label: str  # how tables name the input, e.g. "1x16" or "600x400"

    def array(self) -> npt.NDArray[np.float32]:
        """The request tensor (the same bytes for the server and the in-process limit)."""
        if self.model == "face":
            return face_input(self.shape[3], self.shape[2])
        fill = 1.0 if self.model == "tiny" else 0.5
        return np.full(self.shape, fill, np.float32)


def tiny_request() -> Request:
    """x [1,16] -> y [1,4]."""
    return Request("tiny", "x", (1, 16), "y", (1, 4), "1x16")


def conv_request() -> Request:
    """input [1,3,224,224] -> output [1,64]."""
    return Request("conv", "input", (1, 3, 224, 224), "output", (1, 64), "1x3x224x224")


def face_request(size: str) -> Request:
    """data [1,3,H,W] (size is WxH) -> detection_out [1,1,200,7]."""
    w, h = (int(v) for v in size.lower().split("x"))
    return Request("face", "data", (1, 3, h, w), "detection_out", (1, 1, 200, 7), size)


def face_input(width: int, height: int) -> npt.NDArray[np.float32]:
    """city.jpg resized to WxH as NCHW BGR float32 0..255 (what the demo client sends)."""
    import cv2

    bgr = cv2.imread(str(FACE_IMAGE), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"error: cannot read {FACE_IMAGE}")
    bgr = cv2.resize(bgr, (width, height))
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None], dtype=np.float32)


# ---- tiny and conv, as the peer kit's make_models.py writes them ------------------------------
OPSET = 13
IR_VERSION = 8


def _tiny_graph() -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "B")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["add"]),
        helper.make_node("Relu", ["add"], ["y"]),
    ]
    return helper.make_graph(nodes, "tiny", [x], [y], initializer=[w, b])


def _conv_graph() -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    layers = [(3, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)]
    nodes, inits, prev = [], [], "input"
    for i, (cin, cout, stride) in enumerate(layers):
        std = np.sqrt(2.0 / (cin * 9))  # He init keeps activations O(1)
        w = (rng.standard_normal((cout, cin, 3, 3)) * std).astype(np.float32)
        b = (rng.standard_normal((cout,)) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(
            helper.make_node(
                "Conv",
                [prev, f"w{i}", f"b{i}"],
                [f"c{i}"],
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[stride, stride],
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["output"], axis=1))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 64])
    return helper.make_graph(nodes, "conv", [x], [y], initializer=inits)


def make_onnx_models(root: Path) -> None:
    """Write root/{tiny,conv}/1/model.onnx unless present (OVMS repository layout)."""
    import onnx
    from onnx import helper

    for name, build in (("tiny", _tiny_graph), ("conv", _conv_graph)):
        path = root / name / "1" / "model.onnx"
        if path.exists():
            continue
        model = helper.make_model(
            build(), opset_imports=[helper.make_opsetid("", OPSET)], producer_name="peers-kit"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
