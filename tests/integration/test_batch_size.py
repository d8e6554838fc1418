"""``--batch_size N``, ``-1`` and ``N:M`` on a real model, against in-process OpenVINO.

The model is a matmul with a static batch of 1 (``x`` [1, 8] → ``y`` [1, 4]); the server must
reshape its first dimension as OVMS does, report it in metadata, compute what OpenVINO computes
for the same reshaped model, and refuse batches outside the configured one with OVMS's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from _models import save_ir
from _server import F32, F32_FLAGS, ServerPool

WEIGHTS = np.random.default_rng(8).standard_normal((8, 4)).astype(np.float32)


def matmul_model(batch: ov.Dimension | int = 1) -> ov.Model:
    x = ops.parameter(ov.PartialShape([batch, 8]), ov.Type.f32, name="x")
    x.output(0).get_tensor().set_names({"x"})
    y = ops.matmul(x, ops.constant(WEIGHTS), False, False)
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], "matmul")


def in_process(batch: ov.Dimension | int, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """What OpenVINO computes for the model reshaped to ``batch`` (f32)."""
    model = matmul_model()
    model.reshape({"x": ov.PartialShape([batch, 8])})
    compiled = ov.Core().compile_model(model, "CPU", F32)
    return np.array(compiled.create_infer_request().infer({"x": x})["y"])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("matmul")
    save_ir(matmul_model(), base)
    return base


def infer(client: triton.InferenceServerClient, x: np.ndarray[Any, Any]) -> Any:
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer("m", [tensor]).as_numpy("y")


def rows(count: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(count).standard_normal((count, 8)).astype(np.float32)


@dataclass(frozen=True)
class Case:
    flag: str
    ov_batch: ov.Dimension | int
    metadata: list[int]
    accepted: list[int]
    refused: list[int]
    expected: str
    """The batch as OVMS's refusal prints it."""


CASES = {
    "N": Case("3", 3, [3, 8], [3], [1, 4], "3"),
    "-1": Case("-1", -1, [-1, 8], [1, 2, 7], [], ""),
    "N:M": Case("2:5", ov.Dimension(2, 5), [-1, 8], [2, 5], [1, 6], "[2~5]"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_batch_size_forms(module_server_factory: ServerPool, model_dir: Path, name: str) -> None:
    case = CASES[name]
    args = ["--model_name", "m", "--model_path", str(model_dir), "--batch_size", case.flag]
    server = module_server_factory.start([*args, *F32_FLAGS])
    client = triton.InferenceServerClient(server.grpc_target)
    try:
        assert [int(d) for d in client.get_model_metadata("m").inputs[0].shape] == case.metadata
        for count in case.accepted:
            x = rows(count)
            np.testing.assert_allclose(infer(client, x), in_process(case.ov_batch, x), rtol=1e-6)
        for count in case.refused:
            with pytest.raises(InferenceServerException) as caught:
                infer(client, rows(count))
            assert caught.value.message() == (
                f"Invalid input batch size - Expected: {case.expected}; Actual: {count}; "
                "input name: x"
            )
    finally:
        client.close()
    assert server.stop() == 0
