"""A dynamic model served with shape variants: same answers, the log line, the metrics.

The server runs a dynamic-size conv model at f32 with a variant after two requests of a shape;
a client that repeats one shape ends up on the variant (seen in ``/metrics`` and the log) and
every answer, before and after, equals in-process OpenVINO. Metadata stays dynamic.

With a dynamic batch dimension too, dynamic batching wraps the variants: the variants must still
be built for the shapes requests have (the batcher's load-time probe is not traffic) and their
counts must still reach ``/metrics``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as triton

from _models import conv_onnx, reference, save_onnx
from _rest import sample, scrape
from _server import F32_FLAGS, ServerPool, ServerProcess

MODEL = "conv"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_onnx(conv_onnx(), tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def server(module_server_factory: ServerPool, model_path: Path) -> ServerProcess:
    args = ["--model_name", MODEL, "--model_path", str(model_path.parent.parent)]
    args += ["--shape", "(1,3,-1,-1)", "--metrics_enable", *F32_FLAGS]
    args += ["--max_shape_variants", "1", "--shape_variant_threshold", "2"]
    return module_server_factory.start(args, rest=True)


def infer(server: ServerProcess, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    client = triton.InferenceServerClient(server.grpc_target)
    tensor = triton.InferInput("data", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    result: npt.NDArray[Any] | None = client.infer(MODEL, [tensor]).as_numpy("out")
    assert result is not None
    return result


def variant_counts(server: ServerProcess) -> dict[str, float]:
    samples = scrape(server.rest_url)
    labels = {"name": MODEL, "version": "1"}
    return {
        family: sample(samples, f"ovserve_shape_variant{family}", **labels)
        for family in ("s_compiled", "s_evicted", "s", "_requests")
    }


def variant_families(server: ServerProcess) -> set[str]:
    """The shape-variant metric families that have a sample for the model."""
    labels = frozenset({"name": MODEL, "version": "1"}.items())
    return {
        family
        for family, sample_labels in scrape(server.rest_url)
        if family.startswith("ovserve_shape_variant") and sample_labels == labels
    }


def wait_for(server: ServerProcess, family: str, value: float, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while variant_counts(server)[family] < value:
        assert time.monotonic() < deadline, f"{family} never reached {value}"
        time.sleep(0.05)


def test_a_repeated_shape_runs_on_a_variant_with_equal_answers(
    server: ServerProcess, model_path: Path
) -> None:
    rng = np.random.default_rng(3)
    first = [rng.random((1, 3, 40, 56), dtype=np.float32) for _ in range(2)]
    answers = [(array, infer(server, array)) for array in first]
    wait_for(server, "s_compiled", 1)
    assert "compiled a static variant for shape (1,3,40,56)" in server.log_text()
    later = [rng.random((1, 3, 40, 56), dtype=np.float32) for _ in range(3)]
    later.append(rng.random((1, 3, 24, 24), dtype=np.float32))  # another shape: dynamic
    answers += [(array, infer(server, array)) for array in later]
    counts = variant_counts(server)
    assert counts["_requests"] == 3
    assert counts["s"] == 1
    for array, answer in answers:
        expected = reference(model_path, {"data": array})["out"]
        np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-5)
    metadata = triton.InferenceServerClient(server.grpc_target).get_model_metadata(MODEL)
    assert list(metadata.inputs[0].shape) == [1, 3, -1, -1]


def test_a_second_repeated_shape_evicts_the_first(server: ServerProcess) -> None:
    before = variant_counts(server)
    array = np.ones((1, 3, 32, 32), np.float32)
    infer(server, array)
    infer(server, array)
    wait_for(server, "s_evicted", before["s_evicted"] + 1)
    assert variant_counts(server)["s"] == 1
    assert "evicted the static variant for shape" in server.log_text()


@pytest.fixture(scope="module")
def batching_server(module_server_factory: ServerPool, model_path: Path) -> ServerProcess:
    """The same model with a dynamic batch dimension too: ``auto`` batching wraps it."""
    args = ["--model_name", MODEL, "--model_path", str(model_path.parent.parent)]
    args += ["--shape", "(-1,3,-1,-1)", "--metrics_enable", *F32_FLAGS]
    args += ["--max_shape_variants", "1", "--shape_variant_threshold", "2"]
    return module_server_factory.start(args, rest=True)


def test_with_batching_the_variant_metrics_are_exported(batching_server: ServerProcess) -> None:
    assert "version 1: dynamic batching of concurrent requests" in batching_server.log_text()
    assert variant_families(batching_server) >= {
        "ovserve_shape_variants_compiled",
        "ovserve_shape_variants",
        "ovserve_shape_variant_requests",
    }


def test_with_batching_a_repeated_shape_runs_on_a_variant(
    batching_server: ServerProcess, model_path: Path
) -> None:
    rng = np.random.default_rng(5)
    # Batches (two rows here) run on the dynamic model: their sizes vary with the load, and a
    # variant each would churn compilations. They come first: a build they asked for would be
    # the first one, and the only one (--max_shape_variants 1).
    arrays = [rng.random((2, 3, 32, 48), dtype=np.float32) for _ in range(3)]
    arrays += [rng.random((1, 3, 32, 48), dtype=np.float32) for _ in range(2)]
    answers = [(array, infer(batching_server, array)) for array in arrays]
    wait_for(batching_server, "s_compiled", 1)
    log = batching_server.log_text()
    assert "compiled a static variant for shape (1,3,32,48)" in log
    assert "(2,3,32,48)" not in log
    later = [rng.random((1, 3, 32, 48), dtype=np.float32) for _ in range(2)]
    answers += [(array, infer(batching_server, array)) for array in later]
    assert variant_counts(batching_server)["_requests"] == 2
    for array, answer in answers:
        rows = [reference(model_path, {"data": row[None]})["out"] for row in array]
        np.testing.assert_allclose(answer, np.concatenate(rows), rtol=1e-5, atol=1e-5)
