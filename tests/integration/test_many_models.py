"""Many models loading at once (issue 14): every start becomes ready, every model answers.

A config.json with 20 copies of a small dynamic ONNX conv model (``[1,3,-1,-1]``, one folder
each) used to hang in 2 of 40 starts: load threads making their first numpy <-> OpenVINO
conversions at the same moment deadlocked inside OpenVINO's Python bindings (see
``engine/bindings.py``). Each start here must be ready within a bound, then every model gets
its first request at the same moment (first conversions on many inference threads at once),
and each must answer within a bound. The default run starts 3 times; ``-m slow`` runs the
issue's 30 starts. The mechanism itself is reproduced without the fix in
``tests/unit/engine/test_bindings.py`` (it hangs there about 7 times in 10).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from _models import conv_onnx, save_onnx
from _server import ServerProcess

MODELS = 20
READY_BOUND_S = 60.0
"""Ready in about 2 s here; the bound only turns a hang into a failure (shared 2-core CI)."""
ANSWER_BOUND_S = 30.0
INPUT = np.zeros((1, 3, 16, 16), np.float32)


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    entries = []
    for index in range(MODELS):
        base = root / f"conv{index}"
        save_onnx(conv_onnx(seed=index), base)
        entries.append({"config": {"name": f"conv{index}", "base_path": str(base)}})
    path = root / "config.json"
    path.write_text(json.dumps({"model_config_list": entries}))
    return path


def first_requests_at_once(target: str) -> list[tuple[int, ...]]:
    """One request to every model, all at the same moment; the output shapes."""

    def infer(index: int) -> tuple[int, ...]:
        client = triton.InferenceServerClient(target)
        tensor = triton.InferInput("data", list(INPUT.shape), "FP32")
        tensor.set_data_from_numpy(INPUT)
        result = client.infer(f"conv{index}", [tensor], client_timeout=ANSWER_BOUND_S)
        client.close()
        return tuple(result.as_numpy("out").shape)

    with ThreadPoolExecutor(MODELS) as pool:
        return list(pool.map(infer, range(MODELS)))


def start_many_times(log_dir: Path, config_path: Path, starts: int) -> None:
    for _ in range(starts):
        server = ServerProcess(["--config_path", str(config_path)], log_dir=log_dir).start()
        try:
            server.wait_ready(READY_BOUND_S)
            assert first_requests_at_once(server.grpc_target) == [(1, 4, 16, 16)] * MODELS
        except BaseException:
            server.kill()
            raise
        assert server.stop() == 0, server.log_text()


def test_twenty_models_start_and_answer_every_time(tmp_path: Path, config_path: Path) -> None:
    start_many_times(tmp_path, config_path, 3)


@pytest.mark.slow
def test_twenty_models_start_thirty_times_in_a_row(tmp_path: Path, config_path: Path) -> None:
    start_many_times(tmp_path, config_path, 30)
