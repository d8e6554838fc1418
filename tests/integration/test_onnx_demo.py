"""OVMS's ``using_onnx_model`` demo end to end: its server command unchanged, a real classifier.

The model is EfficientNet-Lite0 built from PyPI packages by ``demos/using_onnx_model/prepare``
(torch in a venv of its own, made once into ``$OVSERVE_TEST_CACHE/onnx-demo`` or the pytest
cache). The server runs with the demo's flags verbatim and the demo client
``onnx_model_demo.py`` must name the right ImageNet class for each sample picture.

If the packages cannot be fetched the test FAILS, saying so. ``OVSERVE_SKIP_ONNX_DEMO=1``
skips it instead (for machines without access to the package index).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from _server import ServerPool
from _skips import OFFLINE, ONNX_DEMO, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "demos" / "using_onnx_model"
OPT_OUT = "OVSERVE_SKIP_ONNX_DEMO"
DEMO_SERVER_FLAGS = [
    "--model_name",
    "resnet",
    "--layout",
    "NHWC:NCHW",
    "--mean",
    "[123.675,116.28,103.53]",
    "--scale",
    "[58.395,57.12,57.375]",
    "--shape",
    "(1,224,224,3)",
    "--color_format",
    "BGR:RGB",
    "--precision",
    "uint8:fp32",
]
"""OVMS's README command, less ``--model_path`` and ``--port`` (added per test)."""
EXPECTED = {
    DEMO_DIR / "images" / "chelsea.png": {281, 282, 283, 284, 285},  # a cat
    DEMO_DIR / "images" / "coffee.png": {504, 967, 968},  # coffee mug, espresso, cup
    REPO_ROOT / "demos" / "face_detection" / "images" / "grace_hopper.jpg": {652},  # uniform
}
PREPARE_TIMEOUT = 900


def _cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("OVSERVE_TEST_CACHE")
    if env:
        return Path(env) / "onnx-demo"
    if getattr(request.config, "cache", None) is not None:
        return Path(request.config.cache.mkdir("onnx-demo"))
    return tmp_path_factory.mktemp("onnx-demo")


@pytest.fixture(scope="session")
def demo_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared model folder (``1/model.onnx`` and ``labels.json``)."""
    if os.environ.get(OPT_OUT):
        unavailable(ONNX_DEMO, f"{OPT_OUT} is set")
    cache = _cache_dir(request, tmp_path_factory)
    recipe = hashlib.sha256(
        (DEMO_DIR / "prepare_model.py").read_bytes()
        + (DEMO_DIR / "requirements-prepare.txt").read_bytes()
    ).hexdigest()[:12]
    out = cache / f"model-{recipe}"
    if (out / "1" / "model.onnx").is_file() and (out / "labels.json").is_file():
        return out
    proc = subprocess.run(
        [str(DEMO_DIR / "prepare"), str(out)],
        env={**os.environ, "PREPARE_VENV": str(cache / "venv"), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=PREPARE_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        unavailable(
            OFFLINE,
            "could not prepare the using_onnx_model demo's model (torch and the "
            "EfficientNet-Lite0 packages from the package index); "
            f"{OPT_OUT}=1 also skips this test.\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}",
        )
    return out


def test_ovms_demo_command_and_client_classify_the_samples(
    demo_model: Path, server_factory: ServerPool
) -> None:
    server = server_factory.start([*DEMO_SERVER_FLAGS, "--model_path", str(demo_model)])
    images = list(EXPECTED)
    proc = subprocess.run(
        [
            sys.executable,
            str(DEMO_DIR / "onnx_model_demo.py"),
            "--service_url",
            server.grpc_target,
            "--labels",
            str(demo_model / "labels.json"),
            "--image_path",
            *map(str, images),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    classes = [int(found) for found in re.findall(r"Class with highest score: (\d+)", proc.stdout)]
    assert len(classes) == len(images), proc.stdout
    for image, found in zip(images, classes, strict=True):
        assert found in EXPECTED[image], f"{image.name}: class {found}\n{proc.stdout}"
    assert "Detected class name: military uniform" in proc.stdout
