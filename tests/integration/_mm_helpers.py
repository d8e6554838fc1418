"""Helpers for the model-management tests: tiny OpenVINO models on disk and a server process.

The server is a black box: started as ``python -m ovserve`` on free ports by ``_server`` (the
one launcher), polled until ready, talked to with the public clients only.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from _server import START_TIMEOUT, ServerError, ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]  # re-exported: tests import them from here too

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
READY_TIMEOUT_S = START_TIMEOUT


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
# server process: the one launcher in ``_server``, under the names these tests use
# ---------------------------------------------------------------------------------------------
def start_server(args: Sequence[str], log_path: Path, *, wait: bool = True) -> ServerProcess:
    """Start ``python -m ovserve`` with ``args`` on free gRPC and REST ports, logging to
    ``log_path``; wait until it is ready unless ``wait`` is false."""
    server = ServerProcess(args, log_file=log_path, rest=True).start()
    if wait:
        try:
            server.wait_ready(READY_TIMEOUT_S)
        except BaseException:
            server.kill()
            raise
    return server


def wait_ready(server: ServerProcess, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll server readiness; fail with the log if the process dies or never gets ready."""
    server.wait_ready(timeout)


@contextlib.contextmanager
def running_server(args: Sequence[str], log_path: Path) -> Iterator[ServerProcess]:
    """A server for the duration of a ``with`` block: stopped with SIGTERM at the end, and it
    must exit 0 (unless the block raised, then it is killed and the error propagates)."""
    server = start_server(args, log_path)
    try:
        yield server
    except BaseException:
        server.kill()
        raise
    status = server.stop()
    if status != 0:
        raise ServerError(f"ovserve exited with {status} after SIGTERM:\n{server.log()}")


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
