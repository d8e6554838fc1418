"""The client of OVMS's ``using_onnx_model`` demo (server-side preprocessing variant).

It sends each picture as OVMS's demo client does: resized to 224x224, colour order flipped from
RGB to BGR, UINT8, shape [1,224,224,3] (NHWC), to the model ``resnet`` over TF Serving gRPC
(ovmsclient); the server, started with ``--layout NHWC:NCHW --mean ... --scale ...
--color_format BGR:RGB --precision uint8:fp32``, turns that into the float NCHW RGB tensor the
ONNX model wants. The reply is the class probabilities; the client prints the best class.

    python onnx_model_demo.py --service_url localhost:9001 [--image_path images/coffee.png ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ovmsclient import make_grpc_client
from PIL import Image, UnidentifiedImageError

HERE = Path(__file__).resolve().parent
INPUT_NAME = "gpu_0/data_0"
SIZE = 224


class ClientError(Exception):
    """A problem the user can fix; printed as one line."""


def load_bgr(path: Path) -> np.ndarray:
    """The picture as the demo sends it: [1,224,224,3] UINT8, BGR."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ClientError(f"cannot read {path} as an image: {exc}") from exc
    return np.ascontiguousarray(rgb[:, :, ::-1])[np.newaxis]


def load_labels(path: Path | None) -> list[str] | None:
    """Class names by index (labels.json written by prepare_model.py), if there is one."""
    if path is None or not path.is_file():
        return None
    names = json.loads(path.read_text(encoding="utf-8"))
    return [str(name) for name in names]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Classify pictures with the demo's ONNX model.")
    parser.add_argument(
        "--image_path",
        type=Path,
        nargs="+",
        default=sorted((HERE / "images").glob("*.png")),
        help="pictures to classify (default: the ones in images/)",
    )
    parser.add_argument("--service_url", default="localhost:9001", help="gRPC host:port")
    parser.add_argument("--model_name", default="resnet")
    parser.add_argument(
        "--labels",
        type=Path,
        default=HERE.parents[1] / "models" / "efficientnet-onnx" / "labels.json",
        help="class names (prepare_model.py writes them beside the model)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    labels = load_labels(args.labels)
    client = make_grpc_client(args.service_url)
    for path in args.image_path:
        batch = load_bgr(path)
        print(f"Running inference with image: {path}")
        try:
            scores = np.asarray(client.predict({INPUT_NAME: batch}, args.model_name))
        except Exception as exc:  # ovmsclient raises its own tree plus grpc errors
            raise ClientError(f"the server refused the request: {exc}") from exc
        best = int(np.argmax(scores))
        print(f"Class with highest score: {best}")
        if labels is not None:
            print(f"Detected class name: {labels[best]}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
