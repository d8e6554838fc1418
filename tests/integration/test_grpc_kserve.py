"""KServe v2 gRPC against a real ovserve, driven by tritonclient; checked against OpenVINO."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from _models import (
    KSERVE_NUMPY,
    add_onnx,
    dtypes_model,
    reference,
    save_ir,
    save_onnx,
    scale_model,
    string_model,
)
from _server import F32_FLAGS, ServerPool, ServerProcess

RNG = np.random.default_rng(7)


def client_for(server: ServerProcess) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.grpc_target)


def infer_input(name: str, array: np.ndarray[Any, Any]) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def kserve_error(call: Callable[[], Any]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


@pytest.fixture(scope="module")
def typed_dtypes_server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """The datatypes model without FP16, which KServe cannot send as typed contents."""
    base = tmp_path_factory.mktemp("typed")
    save_ir(dtypes_model(tuple(TYPED_FIELD)), base)
    return module_server_factory.start(
        ["--model_name", "typed", "--model_path", str(base), *F32_FLAGS]
    )


# --- server and model metadata -----------------------------------------------------------------


def test_server_live_ready_metadata(range_conv_server: ServerProcess) -> None:
    client = client_for(range_conv_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "OpenVINO Model Server"
    assert metadata.version


def test_model_ready(range_conv_server: ServerProcess) -> None:
    client = client_for(range_conv_server)
    assert client.is_model_ready("conv")
    assert client.is_model_ready("conv", "1")


def test_model_metadata_reports_ranges_as_minus_one(range_conv_server: ServerProcess) -> None:
    metadata = client_for(range_conv_server).get_model_metadata("conv")
    assert metadata.name == "conv"
    assert metadata.platform == "OpenVINO"
    assert list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("data", "FP32", [1, 3, -1, -1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("out", "FP32", [1, 4, -1, -1])
    ]


def test_model_metadata_of_a_dynamic_ir(add_mul_server: ServerProcess) -> None:
    metadata = client_for(add_mul_server).get_model_metadata("add_mul", as_json=True)
    assert metadata["platform"] == "OpenVINO"
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("a", "FP32", ["-1", "4"]),
        ("b", "FP32", ["-1", "4"]),
    ]
    assert [t["name"] for t in metadata["outputs"]] == ["sum", "product"]


# --- inference on a range-shaped ONNX model ----------------------------------------------------


@pytest.mark.parametrize("size", [(300, 400), (200, 500), (500, 200), (200, 200)])
def test_conv_in_range_matches_openvino(
    range_conv_server: ServerProcess, range_conv_model: Path, size: tuple[int, int]
) -> None:
    data = RNG.standard_normal((1, 3, *size)).astype(np.float32)
    result = client_for(range_conv_server).infer("conv", [infer_input("data", data)])
    expected = reference(range_conv_model, {"data": data})["out"]
    got = result.as_numpy("out")
    assert got.shape == (1, 4, *size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    response = result.get_response()
    assert (response.model_name, response.model_version) == ("conv", "1")


def test_conv_out_of_range_is_invalid_argument_with_ovms_text(
    range_conv_server: ServerProcess,
) -> None:
    data = np.zeros((1, 3, 600, 400), np.float32)
    error = kserve_error(
        lambda: client_for(range_conv_server).infer("conv", [infer_input("data", data)])
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == (
        "Invalid input shape - Expected: (1,3,[200~500],[200~500]); Actual: (1,3,600,400); "
        "input name: data"
    )


def test_infer_with_explicit_version_and_request_id(range_conv_server: ServerProcess) -> None:
    data = np.ones((1, 3, 200, 200), np.float32)
    result = client_for(range_conv_server).infer(
        "conv", [infer_input("data", data)], model_version="1", request_id="abc-1"
    )
    response = result.get_response()
    assert (response.model_version, response.id) == ("1", "abc-1")


# --- multi-input, requested outputs ------------------------------------------------------------


def test_multi_input_all_outputs(add_mul_server: ServerProcess) -> None:
    a = RNG.standard_normal((3, 4)).astype(np.float32)
    b = RNG.standard_normal((3, 4)).astype(np.float32)
    result = client_for(add_mul_server).infer("add_mul", [infer_input("b", b), infer_input("a", a)])
    assert [output.name for output in result.get_response().outputs] == ["sum", "product"]
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("product"), a * b)


@pytest.mark.parametrize("names", [["product"], ["sum"], ["product", "sum"]])
def test_requested_outputs_are_honoured(add_mul_server: ServerProcess, names: list[str]) -> None:
    a = np.full((1, 4), 3, np.float32)
    b = np.full((1, 4), 2, np.float32)
    result = client_for(add_mul_server).infer(
        "add_mul",
        [infer_input("a", a), infer_input("b", b)],
        outputs=[triton.InferRequestedOutput(name) for name in names],
    )
    assert [output.name for output in result.get_response().outputs] == names
    expected = {"sum": a + b, "product": a * b}
    for name in names:
        np.testing.assert_array_equal(result.as_numpy(name), expected[name])


def test_unknown_requested_output(add_mul_server: ServerProcess) -> None:
    a = np.ones((1, 4), np.float32)
    error = kserve_error(
        lambda: client_for(add_mul_server).infer(
            "add_mul",
            [infer_input("a", a), infer_input("b", a)],
            outputs=[triton.InferRequestedOutput("nope")],
        )
    )
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message() == "Invalid output name - Output name: nope"


# --- every datatype, raw and typed -------------------------------------------------------------


def dtype_values(name: str, dtype: type[np.generic]) -> np.ndarray[Any, Any]:
    """Values whose doubles fit the type and survive OpenVINO's internal i32/f32 kernels."""
    if dtype is np.bool_:
        return np.array([[True, False, True], [False, False, True]])
    if np.issubdtype(dtype, np.floating):
        return np.array([[-1.5, 0.25, 3.0], [100.5, -0.125, 7.0]], dtype=dtype)
    low = 0 if np.issubdtype(dtype, np.unsignedinteger) else -50
    return np.array([[low, 1, 2], [30, 60, 63]], dtype=dtype)


ALL_INPUTS = {f"in_{name}": dtype_values(name, dtype) for name, dtype in KSERVE_NUMPY.items()}


def check_dtypes(outputs: dict[str, np.ndarray[Any, Any]], model: Any) -> None:
    expected = reference(model, ALL_INPUTS)
    mismatches = {}
    for name, dtype in KSERVE_NUMPY.items():
        got, want = outputs[f"out_{name}"], expected[f"out_{name}"]
        if got.dtype != np.dtype(dtype) or got.shape != want.shape or not np.array_equal(got, want):
            mismatches[name] = (got, want)
    assert not mismatches


def test_every_datatype_through_raw_contents(dtypes_server: ServerProcess) -> None:
    result = client_for(dtypes_server).infer(
        "dtypes", [infer_input(name, array) for name, array in ALL_INPUTS.items()]
    )
    datatypes = {output.name: output.datatype for output in result.get_response().outputs}
    assert datatypes == {f"out_{name}": name for name in KSERVE_NUMPY}
    check_dtypes({name: result.as_numpy(name) for name in datatypes}, dtypes_model())


TYPED_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
"""KServe's typed ``contents`` field per datatype (FP16 has none: it must go raw)."""


def model_infer(server: ServerProcess, request: service_pb2.ModelInferRequest) -> Any:
    """Send a hand-built request with tritonclient's stubs; return the raw response."""
    with grpc.insecure_channel(server.grpc_target) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)


def typed_request(model: str, inputs: dict[str, np.ndarray[Any, Any]]) -> Any:
    """A ModelInferRequest with every input in its typed ``contents`` field."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, array in inputs.items():
        datatype = np_to_triton_dtype(array.dtype)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        getattr(tensor.contents, TYPED_FIELD[datatype]).extend(array.reshape(-1).tolist())
    return request


def test_every_datatype_through_typed_contents(typed_dtypes_server: ServerProcess) -> None:
    inputs = {f"in_{name}": ALL_INPUTS[f"in_{name}"] for name in TYPED_FIELD}
    response = model_infer(typed_dtypes_server, typed_request("typed", inputs))
    result = triton.InferResult(response)
    assert len(response.raw_output_contents) == len(TYPED_FIELD)
    expected = reference(dtypes_model(tuple(TYPED_FIELD)), inputs)
    mismatches = {
        name: (result.as_numpy(name), want)
        for name, want in expected.items()
        if result.as_numpy(name).dtype != want.dtype
        or not np.array_equal(result.as_numpy(name), want)
    }
    assert not mismatches


def test_fp16_has_no_typed_contents(typed_dtypes_server: ServerProcess) -> None:
    inputs = {f"in_{name}": ALL_INPUTS[f"in_{name}"] for name in TYPED_FIELD}
    request = typed_request("typed", inputs)
    request.inputs.add(name="in_FP16", datatype="FP16", shape=[2, 3])
    with pytest.raises(grpc.RpcError) as caught:
        model_infer(typed_dtypes_server, request)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16 needs raw_input_contents; input name: in_FP16" in str(caught.value.details())


def test_typed_contents_match_raw_results(add_mul_server: ServerProcess) -> None:
    a = RNG.standard_normal((2, 4)).astype(np.float32)
    b = RNG.standard_normal((2, 4)).astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="add_mul")
    for name, array in (("a", a), ("b", b)):
        tensor = request.inputs.add(name=name, datatype="FP32", shape=array.shape)
        tensor.contents.fp32_contents.extend(array.reshape(-1).tolist())
    response = model_infer(add_mul_server, request)
    result = triton.InferResult(response)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("product"), a * b)
    assert len(response.raw_output_contents) == 2


# --- an ONNX model with -1 dimensions ----------------------------------------------------------


def test_onnx_with_dynamic_dims_and_json_shape(server_factory: ServerPool, tmp_path: Path) -> None:
    """``--shape`` as JSON per input fixes both inputs of an ONNX model to (2,4)."""
    base = tmp_path / "add"
    save_onnx(add_onnx(), base)
    server = server_factory.start(
        [
            "--model_name",
            "add",
            "--model_path",
            str(base),
            "--shape",
            '{"a": "(2,4)", "b": "(2,4)"}',
        ]
    )
    client = client_for(server)
    assert [list(t.shape) for t in client.get_model_metadata("add").inputs] == [[2, 4], [2, 4]]
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = client.infer("add", [infer_input("a", a), infer_input("b", a)])
    np.testing.assert_array_equal(result.as_numpy("sum"), a + a)
    bad = np.zeros((3, 4), np.float32)
    error = kserve_error(
        lambda: client.infer("add", [infer_input("a", bad), infer_input("b", bad)])
    )
    assert error.message() == "Invalid input batch size - Expected: 2; Actual: 3; input name: a"


def test_ir_with_its_own_ranges_and_static_dims(server_factory: ServerPool, tmp_path: Path) -> None:
    """An IR exported with ranges (no ``--shape``) keeps them; static dims are enforced."""
    model = scale_model((1, 3, (16, 32), (16, 32)), factor=0.5)
    save_ir(model, tmp_path / "scale")
    server = server_factory.start(
        ["--model_name", "scale", "--model_path", str(tmp_path / "scale"), *F32_FLAGS]
    )
    client = client_for(server)
    assert list(client.get_model_metadata("scale").inputs[0].shape) == [1, 3, -1, -1]
    data = RNG.standard_normal((1, 3, 16, 32)).astype(np.float32)
    result = client.infer("scale", [infer_input("data", data)])
    np.testing.assert_array_equal(result.as_numpy("out"), reference(model, {"data": data})["out"])
    error = kserve_error(
        lambda: client.infer("scale", [infer_input("data", np.zeros((1, 3, 33, 16), np.float32))])
    )
    assert error.message() == (
        "Invalid input shape - Expected: (1,3,[16~32],[16~32]); Actual: (1,3,33,16); "
        "input name: data"
    )
    error = kserve_error(
        lambda: client.infer("scale", [infer_input("data", np.zeros((1, 2, 16, 16), np.float32))])
    )
    assert error.message() == (
        "Invalid input shape - Expected: (1,3,[16~32],[16~32]); Actual: (1,2,16,16); "
        "input name: data"
    )


# --- BYTES -------------------------------------------------------------------------------------

WORDS = np.array([b"ab", b"", "zo\u0142w".encode(), b"x\x00y"], dtype=np.object_)


@pytest.fixture(scope="module")
def string_server(
    module_server_factory: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """A string model: ``text`` [-1] BYTES returned as ``text_out``."""
    base = tmp_path_factory.mktemp("strings")
    save_ir(string_model(), base)
    return module_server_factory.start(["--model_name", "strings", "--model_path", str(base)])


def test_bytes_metadata(string_server: ServerProcess) -> None:
    metadata = client_for(string_server).get_model_metadata("strings")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("text", "BYTES", [-1])
    ]


def test_bytes_through_raw_contents(string_server: ServerProcess) -> None:
    result = client_for(string_server).infer("strings", [infer_input("text", WORDS)])
    assert result.get_response().outputs[0].datatype == "BYTES"
    assert result.as_numpy("text_out").tolist() == WORDS.tolist()


def test_bytes_through_typed_contents(string_server: ServerProcess) -> None:
    request = service_pb2.ModelInferRequest(model_name="strings")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(WORDS)])
    tensor.contents.bytes_contents.extend(WORDS.tolist())
    result = triton.InferResult(model_infer(string_server, request))
    assert result.as_numpy("text_out").tolist() == WORDS.tolist()


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 20_000], ids=["small", "large-zero-copy"])
def test_concurrent_requests_get_their_own_answers(
    add_mul_server: ServerProcess, rows: int
) -> None:
    """Many requests in flight at once: every answer is computed from its own inputs."""

    def one(seed: int) -> None:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((rows, 4)).astype(np.float32)
        b = rng.standard_normal((rows, 4)).astype(np.float32)
        result = client_for(add_mul_server).infer(
            "add_mul", [infer_input("a", a), infer_input("b", b)]
        )
        # f32 add and multiply are exactly rounded: any other precision shows.
        np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
        np.testing.assert_array_equal(result.as_numpy("product"), a * b)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(32)))
