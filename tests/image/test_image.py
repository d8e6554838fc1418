"""The OCI image, run with podman as kserve-openvino runs OVMS (opt-in: scripts/test_image).

A model is mounted flat at /mnt/models (as KServe's storage initializer leaves it) and the
container gets kserve-openvino's exact args; it must become ready, answer tritonclient over
gRPC and REST, run as a non-root user with a writable HOME, and carry no pip.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from _models import save_ir, scale_model
from _server import HOST, free_port, rest_server_ready

IMAGE = os.environ.get("OVSERVE_IMAGE", "")
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096"]
KSERVE_OPENVINO_ARGS = [
    "--model_name=face",
    "--model_path=/mnt/models",
    "--port=9000",
    "--rest_port=8080",
    "--file_system_poll_wait_seconds=0",
]


def podman(*args: str) -> str:
    result = subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"podman {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def model_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ovserve-image-model-"))
    save_ir(scale_model((1, 3, -1, -1), 2.0), folder)
    for path in (folder / "1").iterdir():
        path.rename(folder / path.name)
    (folder / "1").rmdir()
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by uid 5000
    yield folder
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


@pytest.fixture(scope="module")
def container(model_dir: Path) -> Iterator[tuple[str, int, int]]:
    assert IMAGE, "set OVSERVE_IMAGE (scripts/test_image does)"
    grpc_port, rest_port = free_port(), free_port()
    cid = podman(
        "run", "-d", *LIMITS,
        "-p", f"{HOST}:{grpc_port}:9000", "-p", f"{HOST}:{rest_port}:8080",
        "-v", f"{model_dir}:/mnt/models:ro",
        IMAGE, *KSERVE_OPENVINO_ARGS,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not rest_server_ready(rest_port):
            running = podman("inspect", "--format", "{{.State.Running}}", cid)
            assert running == "true", podman("logs", cid)
            assert time.monotonic() < deadline, podman("logs", cid)
            time.sleep(0.2)
        yield cid, grpc_port, rest_port
    finally:
        subprocess.run([*PODMAN, "rm", "-f", "-t", "10", cid], capture_output=True, check=False)


def test_answers_tritonclient_over_grpc_and_rest(container: tuple[str, int, int]) -> None:
    _, grpc_port, rest_port = container
    data = np.ones((1, 3, 16, 16), np.float32)
    grpc_input = grpcclient.InferInput("data", list(data.shape), "FP32")
    grpc_input.set_data_from_numpy(data)
    grpc = grpcclient.InferenceServerClient(f"{HOST}:{grpc_port}")
    http_input = httpclient.InferInput("data", list(data.shape), "FP32")
    http_input.set_data_from_numpy(data)
    http = httpclient.InferenceServerClient(f"{HOST}:{rest_port}")
    for out in (
        grpc.infer("face", [grpc_input]).as_numpy("out"),
        http.infer("face", [http_input]).as_numpy("out"),
    ):
        assert out is not None
        np.testing.assert_allclose(out, data * 2.0, rtol=1e-2)


def test_runs_as_non_root_with_a_writable_home(container: tuple[str, int, int]) -> None:
    cid = container[0]
    uid = podman("exec", cid, "id", "-u")
    assert uid == "5000"
    assert podman("exec", cid, "sh", "-c", 'touch "$HOME/probe" && echo "$HOME"') == (
        "/home/ovserve"
    )


def test_no_build_tools_or_caches(container: tuple[str, int, int]) -> None:
    cid = container[0]
    found = podman(
        "exec", cid, "sh", "-c",
        "ls /opt/ovserve/bin; command -v pip pip3 gcc cc make || true; "
        "ls /opt/ovserve/lib/python3*/site-packages; "
        "ls -A /root/.cache /var/lib/apt/lists /var/cache/apt 2>/dev/null || true",
    )  # fmt: skip
    assert "ovserve" in found.split()
    for tool in ("pip", "pip3", "gcc", "make", "setuptools"):
        assert tool not in found.split(), found
