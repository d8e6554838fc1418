"""Helpers for the model-management tests: tiny OpenVINO models on disk and a server process.

The server is a black box: started as ``python -m ovserve`` on free ports, polled until ready,
talked to with the public clients only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
READY_TIMEOUT_S = 60.0


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def save_model(model: ov.Model, folder: Path) -> Path:
    """Write ``model.xml``/``.bin`` into ``folder`` (made if missing) atomically enough for
    a poller: the folder appears with both files already in it."""
    staging = folder.parent / f".{folder.name}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, staging / "model.xml", compress_to_fp16=False)
    staging.rename(folder)
    return folder / "model.xml"


def add_model(shape: Sequence[int], addend: float, name: str = "x") -> ov.Model:
    """``y = x + addend``: the output tells which version answered."""
    x = ops.parameter(list(shape), ov.Type.f32, name=name)
    y = ops.add(x, ops.constant(np.float32(addend)))
    y.output(0).get_tensor().set_names({"y"})
    x.output(0).get_tensor().set_names({name})
    return ov.Model([y], [x], f"add{addend}")


def channel_scale_model() -> ov.Model:
    """NCHW ``(1,3,4,5)`` input scaled per channel (1, 2, 3): layout mistakes change results."""
    x = ops.parameter([1, 3, 4, 5], ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    scale = ops.constant(np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1))
    y = ops.multiply(x, scale)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], "channel_scale")


def two_input_model() -> ov.Model:
    """Inputs ``a``, ``b`` (1,3); outputs ``sum`` = a+b and ``diff`` = a-b."""
    a = ops.parameter([1, 3], ov.Type.f32, name="a")
    b = ops.parameter([1, 3], ov.Type.f32, name="b")
    a.output(0).get_tensor().set_names({"a"})
    b.output(0).get_tensor().set_names({"b"})
    total = ops.add(a, b)
    diff = ops.subtract(a, b)
    total.output(0).get_tensor().set_names({"sum"})
    diff.output(0).get_tensor().set_names({"diff"})
    return ov.Model([total, diff], [a, b], "two_inputs")


def make_repo(base: Path, versions: Sequence[int], shape: Sequence[int] = (1, 3)) -> Path:
    """``base/<v>/model.xml`` computing ``x + v`` for each version."""
    for version in versions:
        save_model(add_model(shape, float(version)), base / str(version))
    return base


def write_json_atomically(path: Path, value: object) -> None:
    """Replace a file in one step, so a poller never reads half of it."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(value))
    staging.replace(path)


def model_entry(name: str, base_path: Path | str, **extra: Any) -> dict[str, Any]:
    """One ``model_config_list`` item."""
    return {"config": {"name": name, "base_path": str(base_path), **extra}}


# ---------------------------------------------------------------------------------------------
# server process
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``ovserve`` and its log."""

    process: subprocess.Popen[bytes]
    port: int
    rest_port: int
    log_path: Path
    clients: list[grpcclient.InferenceServerClient] = field(default_factory=list)

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC server."""
        return f"127.0.0.1:{self.port}"

    def client(self) -> grpcclient.InferenceServerClient:
        """A KServe gRPC client (closed when the server stops)."""
        client = grpcclient.InferenceServerClient(self.grpc_url)
        self.clients.append(client)
        return client

    def log(self) -> str:
        """Everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit status (kill if it hangs)."""
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)


def start_server(args: Sequence[str], log_path: Path, *, wait: bool = True) -> ServerProcess:
    """Start ``python -m ovserve`` with ``args`` on free gRPC and REST ports."""
    port, rest_port = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ovserve",
                "--port",
                str(port),
                "--rest_port",
                str(rest_port),
                *args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = ServerProcess(process, port, rest_port, log_path)
    if wait:
        try:
            wait_ready(server)
        except BaseException:
            server.stop()
            raise
    return server


def wait_ready(server: ServerProcess, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll server readiness; fail with the log if the process dies or never gets ready."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(
                    f"ovserve exited with {server.process.returncode}:\n{server.log()}"
                )
            with contextlib.suppress(InferenceServerException):
                if client.is_server_ready():
                    return
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"ovserve not ready after {timeout}s:\n{server.log()}")


@contextlib.contextmanager
def running_server(args: Sequence[str], log_path: Path) -> Iterator[ServerProcess]:
    """A server for the duration of a ``with`` block; always stopped."""
    server = start_server(args, log_path)
    try:
        yield server
    finally:
        server.stop()


def eventually(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until true (server-side changes happen on the poll period)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


# ---------------------------------------------------------------------------------------------
# requests
# ---------------------------------------------------------------------------------------------
def infer(
    client: grpcclient.InferenceServerClient,
    model: str,
    inputs: dict[str, np.ndarray[Any, Any]],
    version: str = "",
) -> dict[str, np.ndarray[Any, Any]]:
    """One KServe inference; every output as an array."""
    request = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        request.append(tensor)
    result = client.infer(model, request, model_version=version)
    response = result.get_response()
    return {output.name: result.as_numpy(output.name) for output in response.outputs}


def ready_versions(client: grpcclient.InferenceServerClient, model: str) -> list[int]:
    """Versions metadata lists (AVAILABLE ones)."""
    try:
        return sorted(int(v) for v in client.get_model_metadata(model).versions)
    except InferenceServerException:
        return []
