"""The KServe and TF Serving gRPC servicers over a FakeEngine-backed service (no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovserve.config.model_config import ModelConfig
from ovserve.config.version_policy import AllVersions
from ovserve.errors import (
    ErrorCode,
    InvalidInput,
    ModelNotFound,
    OvserveError,
    ShapeMismatch,
    VersionNotFound,
)
from ovserve.frontends._generated.kserve import grpc_predict_v2_pb2 as pb
from ovserve.frontends._generated.tensorflow.core.framework import tensor_pb2, types_pb2
from ovserve.frontends._generated.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)
from ovserve.frontends.grpc_server import TRIM_AFTER_BYTES, guard
from ovserve.frontends.kserve.grpc_servicer import KServeServicer
from ovserve.frontends.kserve.wire import SPLIT_MIN_BYTES, parse_infer_request
from ovserve.frontends.tfserving.grpc_servicer import ModelServicer, PredictionServicer
from ovserve.frontends.tfserving.wire import PredictRequestView, parse_predict_request
from ovserve.metrics import Metrics
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.serving.service import ServingService

from _fake_engine import FakeEngine

T = TypeVar("T")
RepoFactory = Callable[..., ModelConfig]
CONTEXT: Any = None  # the servicers never touch the context: errors are mapped by grpc_server.guard


@pytest.fixture
def service(engine: FakeEngine, make_repo: RepoFactory) -> ServingService:
    async def build() -> ServingService:
        manager = ModelManager(engine)
        await manager.add_model(make_repo([1, 2], policy=AllVersions()))
        service = ServingService(manager)
        service.ready = True
        return service

    return asyncio.run(build())


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def build_sync(build: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(build())


def kserve_request(
    version: str = "", values: tuple[float, ...] = (1, 2, 3)
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", model_version=version, id="r1")
    request.inputs.add(name="data", datatype="FP32", shape=[1, 3])
    request.raw_input_contents.append(np.array(values, np.float32).tobytes())
    return request


# --- KServe ------------------------------------------------------------------------------------


def test_kserve_health_and_server_metadata(service: ServingService) -> None:
    servicer = KServeServicer(service)
    assert run(servicer.ServerLive(pb.ServerLiveRequest(), CONTEXT)).live
    assert run(servicer.ServerReady(pb.ServerReadyRequest(), CONTEXT)).ready
    service.ready = False
    assert not run(servicer.ServerReady(pb.ServerReadyRequest(), CONTEXT)).ready
    metadata = run(servicer.ServerMetadata(pb.ServerMetadataRequest(), CONTEXT))
    assert metadata.name == "OpenVINO Model Server"


def test_kserve_model_ready_and_metadata(service: ServingService) -> None:
    servicer = KServeServicer(service)
    assert run(servicer.ModelReady(pb.ModelReadyRequest(name="m", version="1"), CONTEXT)).ready
    with pytest.raises(VersionNotFound):
        run(servicer.ModelReady(pb.ModelReadyRequest(name="m", version="3"), CONTEXT))
    metadata = run(servicer.ModelMetadata(pb.ModelMetadataRequest(name="m"), CONTEXT))
    assert list(metadata.versions) == ["1", "2"]
    assert metadata.platform == "OpenVINO"
    assert list(metadata.inputs[0].shape) == [-1, 3]


def test_kserve_model_ready_is_false_for_versions_that_do_not_serve(
    engine: FakeEngine, make_repo: RepoFactory
) -> None:
    async def scenario() -> list[bool]:
        manager = ModelManager(engine)
        model = await manager.add_model(make_repo([1, 2, 3, 4], policy=AllVersions(), broken=[3]))
        model.versions[2].state = ModelVersionState.LOADING
        await model.versions[4].retire()
        servicer = KServeServicer(ServingService(manager))
        answers = []
        for version in ("1", "2", "3", "4"):
            request = pb.ModelReadyRequest(name="m", version=version)
            answers.append((await servicer.ModelReady(request, CONTEXT)).ready)
        return answers

    assert run(scenario()) == [True, False, False, False]


# --- one data plane: each gRPC request is counted once ------------------------------------------


class AbortContext:
    """What ``guard`` needs from a servicer context: ``abort`` raises, as grpc's does."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.RpcError(details)


def through_guard(method: str, behavior: Any, request: Any) -> AbortContext:
    """Run one call as the gRPC server would: the servicer method behind ``guard``."""

    async def call() -> AbortContext:
        handler = guard(method, grpc.unary_unary_rpc_method_handler(behavior))
        context = AbortContext()
        with contextlib.suppress(grpc.RpcError):
            await handler.unary_unary(request, context)
        return context

    return run(call())


def test_grpc_requests_are_counted_once(engine: FakeEngine, make_repo: RepoFactory) -> None:
    async def build() -> ServingService:
        manager = ModelManager(engine)
        await manager.add_model(make_repo([1, 2], policy=AllVersions()))
        return ServingService(manager, Metrics(enabled=True))

    service = build_sync(build)
    servicer = KServeServicer(service)
    infer = "/inference.GRPCInferenceService/ModelInfer"
    assert through_guard(infer, servicer.ModelInfer, kserve_request()).aborted is None
    bad = kserve_request("1", values=(1, 2))  # decoded and refused inside the call
    assert through_guard(infer, servicer.ModelInfer, bad).aborted is not None
    predict = PredictionServicer(service).Predict
    through_guard("/tensorflow.serving.PredictionService/Predict", predict, predict_request())

    def sample(family: str, **labels: str) -> float | None:
        return service.metrics.registry.get_sample_value(
            family, {"interface": "gRPC", "name": "m", **labels}
        )

    kserve = {"api": "KServe", "method": "ModelInfer"}
    assert sample("ovms_requests_success", **kserve, version="2") == 1
    assert sample("ovms_requests_fail", **kserve, version="2") == 0
    assert sample("ovms_requests_fail", **kserve, version="1") == 1
    assert sample("ovms_requests_success", **kserve, version="1") == 0
    tfs = {"api": "TensorFlowServing", "method": "Predict", "version": "2"}
    assert (sample("ovms_requests_success", **tfs), sample("ovms_requests_fail", **tfs)) == (1, 0)
    assert sample("ovms_request_time_us_count", version="2") == 2
    assert sample("ovms_request_time_us_count", version="1") is None


def test_kserve_infer(service: ServingService) -> None:
    response = run(KServeServicer(service).ModelInfer(kserve_request(), CONTEXT))
    assert (response.model_name, response.model_version, response.id) == ("m", "2", "r1")
    assert response.outputs[0].name == "out"
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [6, 6, 6]


def test_kserve_infer_given_version(service: ServingService) -> None:
    response = run(KServeServicer(service).ModelInfer(kserve_request("1"), CONTEXT))
    assert response.model_version == "1"


def test_kserve_infer_errors_are_raised_for_the_guard(service: ServingService) -> None:
    servicer = KServeServicer(service)
    unknown = kserve_request()
    unknown.model_name = "nope"
    with pytest.raises(ModelNotFound):
        run(servicer.ModelInfer(unknown, CONTEXT))
    with pytest.raises(InvalidInput) as caught:
        run(servicer.ModelInfer(kserve_request("x"), CONTEXT))
    assert caught.value.code is ErrorCode.MODEL_VERSION_INVALID_FORMAT


def test_kserve_stream_reports_errors_in_band(service: ServingService) -> None:
    bad = kserve_request()
    bad.inputs[0].name = "image"

    async def requests() -> AsyncIterator[pb.ModelInferRequest]:
        for request in (kserve_request(), bad, kserve_request("1")):
            yield request

    async def collect() -> list[pb.ModelStreamInferResponse]:
        stream = KServeServicer(service).ModelStreamInfer(requests(), CONTEXT)
        return [response async for response in stream]

    responses = run(collect())
    assert [r.error_message for r in responses] == [
        "",
        "Missing input with specific name - Required input: data",
        "",
    ]
    assert responses[2].infer_response.model_version == "1"


# --- TF Serving --------------------------------------------------------------------------------


def predict_request(version: int | None = None) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    if version is not None:
        request.model_spec.version.value = version
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    proto.tensor_shape.dim.add(size=1)
    proto.tensor_shape.dim.add(size=3)
    proto.float_val.extend([1, 2, 4])
    request.inputs["data"].CopyFrom(proto)
    return request


def test_tfs_predict(service: ServingService) -> None:
    response = run(PredictionServicer(service).Predict(predict_request(1), CONTEXT))
    assert (response.model_spec.name, response.model_spec.version.value) == ("m", 1)
    out = response.outputs["out"]
    assert np.frombuffer(out.tensor_content, np.float32).tolist() == [7, 7, 7]
    assert [dim.size for dim in out.tensor_shape.dim] == [1, 3]


def test_tfs_predict_reads_tensor_content_read_apart(service: ServingService) -> None:
    request = predict_request()
    request.inputs["data"].ClearField("float_val")
    content = memoryview(np.array([1, 2, 4], np.float32).tobytes())
    view = PredictRequestView(request, {"data": content})
    response = run(PredictionServicer(service).Predict(view, CONTEXT))
    assert np.frombuffer(response.outputs["out"].tensor_content, np.float32).tolist() == [7, 7, 7]


def test_tfs_predict_output_filter(service: ServingService) -> None:
    request = predict_request()
    request.output_filter.append("nope")
    with pytest.raises(InvalidInput) as caught:
        run(PredictionServicer(service).Predict(request, CONTEXT))
    assert caught.value.code is ErrorCode.INVALID_OUTPUT


def test_tfs_predict_without_model_spec(service: ServingService) -> None:
    with pytest.raises(OvserveError) as caught:
        run(PredictionServicer(service).Predict(predict_pb2.PredictRequest(), CONTEXT))
    assert caught.value.code is ErrorCode.MODEL_SPEC_MISSING


def test_tfs_metadata(service: ServingService) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "m"
    response = run(PredictionServicer(service).GetModelMetadata(request, CONTEXT))
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def["serving_default"].inputs) == ["data"]


@pytest.mark.parametrize(
    "fields", [[], ["signature_def", "x"], ["signature_def", "signature_def"], ["other"]]
)
@pytest.mark.parametrize("name", ["m", "nope"])
def test_tfs_metadata_needs_exactly_signature_def(
    service: ServingService, fields: list[str], name: str
) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = name  # checked before the model is looked up, as OVMS
    with pytest.raises(InvalidInput) as caught:
        run(PredictionServicer(service).GetModelMetadata(request, CONTEXT))
    assert (caught.value.code, caught.value.text) == (
        ErrorCode.INVALID_SIGNATURE_DEF,
        "Invalid signature name",
    )


def test_tfs_metadata_without_model_spec(service: ServingService) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["other"])
    with pytest.raises(InvalidInput) as caught:
        run(PredictionServicer(service).GetModelMetadata(request, CONTEXT))
    assert caught.value.code is ErrorCode.MODEL_SPEC_MISSING


def test_tfs_metadata_leaves_method_name_empty(service: ServingService) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "m"
    request.model_spec.signature_name = "anything"
    response = run(PredictionServicer(service).GetModelMetadata(request, CONTEXT))
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert signatures.signature_def["serving_default"].method_name == ""


@pytest.mark.parametrize("signature", ["", "serving_default", "predict_images", "x"])
def test_tfs_predict_ignores_signature_name_and_version_label(
    service: ServingService, signature: str
) -> None:
    request = predict_request()
    request.model_spec.signature_name = signature
    request.model_spec.version_label = "stable"
    response = run(PredictionServicer(service).Predict(request, CONTEXT))
    assert response.model_spec.version.value == 2
    assert np.frombuffer(response.outputs["out"].tensor_content, np.float32).tolist() == [7, 7, 7]


def test_tfs_status(service: ServingService) -> None:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "m"
    response = run(ModelServicer(service).GetModelStatus(request, CONTEXT))
    assert [entry.version for entry in response.model_version_status] == [1, 2]
    request.model_spec.version.value = 2
    response = run(ModelServicer(service).GetModelStatus(request, CONTEXT))
    assert [entry.version for entry in response.model_version_status] == [2]
    request.model_spec.version.value = 7
    with pytest.raises(VersionNotFound):
        run(ModelServicer(service).GetModelStatus(request, CONTEXT))


# --- fuzzing: mutated requests ------------------------------------------------------------------
#
# A valid request large enough (>= SPLIT_MIN_BYTES) for the zero-copy parse is mutated at a few
# places, mostly in its header. The zero-copy parse must agree with protobuf's own parse: both
# refuse the bytes, or both accept them and the servicer answers (or refuses) them the same way.
# A refusal must be a client error of the right class with a code that class may carry; the
# answer must be the fake engine's sum of the values protobuf read.

ROWS = SPLIT_MIN_BYTES // 12 + 1
"""Rows of the [ROWS, 3] FP32 input: just past the zero-copy threshold."""

CLIENT_ERRORS: dict[type[OvserveError], set[ErrorCode]] = {
    ModelNotFound: {ErrorCode.MODEL_NAME_MISSING},
    VersionNotFound: {ErrorCode.MODEL_VERSION_MISSING},
    InvalidInput: {
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.INVALID_NO_OF_INPUTS,
        ErrorCode.INVALID_MISSING_INPUT,
        ErrorCode.INVALID_UNEXPECTED_INPUT,
        ErrorCode.INVALID_PRECISION,
        ErrorCode.INVALID_CONTENT_SIZE,
        ErrorCode.INVALID_VALUE_COUNT,
        ErrorCode.INVALID_OUTPUT,
        ErrorCode.MODEL_SPEC_MISSING,
        ErrorCode.MODEL_VERSION_INVALID_FORMAT,
    },
    ShapeMismatch: {
        ErrorCode.INVALID_SHAPE,
        ErrorCode.INVALID_BATCH_SIZE,
        ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS,
    },
}


def mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buffer = bytearray(data)
    for position, value in edits:
        buffer[position % len(buffer)] = value
    return bytes(buffer)


POSITIONS = st.one_of(st.integers(0, 64), st.integers(0, 200_000))
"""Mostly the header (names, shapes, datatype, field tags), sometimes anywhere."""
EDITS = st.lists(st.tuples(POSITIONS, st.integers(0, 255)), min_size=1, max_size=4)
FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def outcome(call: Coroutine[Any, Any, T]) -> T | OvserveError:
    """The reply, or the client error raised (checked against CLIENT_ERRORS)."""
    try:
        return run(call)
    except OvserveError as error:
        refused = error
    assert type(refused) in CLIENT_ERRORS, f"{type(refused).__name__}: {refused.text}"
    assert refused.code in CLIENT_ERRORS[type(refused)], f"{refused.code}: {refused.text}"
    return refused


def large_kserve_request() -> bytes:
    values = np.arange(ROWS * 3, dtype=np.float32) % 7
    request = kserve_request("1", tuple(values.tolist()))
    request.inputs[0].shape[:] = [ROWS, 3]
    data = request.SerializeToString()
    assert len(data) >= SPLIT_MIN_BYTES
    return data


def large_predict_request() -> bytes:
    request = predict_request(1)
    proto = request.inputs["data"]
    proto.ClearField("float_val")
    proto.tensor_shape.dim[0].size = ROWS
    proto.tensor_content = (np.arange(ROWS * 3, dtype=np.float32) % 7).tobytes()
    data = request.SerializeToString()
    assert len(data) >= SPLIT_MIN_BYTES
    return data


def test_the_fuzzed_requests_take_the_zero_copy_path() -> None:
    kserve = parse_infer_request(large_kserve_request())
    assert all(isinstance(raw, memoryview) for raw in kserve.raw_inputs)
    assert len(kserve.message.raw_input_contents) == 0
    tfs = parse_predict_request(large_predict_request())
    assert set(tfs.contents) == {"data"}
    assert tfs.message.inputs["data"].tensor_content == b""


def _kserve_values(reply: pb.ModelInferResponse) -> np.ndarray[Any, Any]:
    return np.frombuffer(reply.raw_output_contents[0], np.float32)


@FUZZ
@given(edits=EDITS)
def test_mutated_kserve_requests(service: ServingService, edits: list[tuple[int, int]]) -> None:
    data = mutate(large_kserve_request(), edits)
    try:
        plain = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            parse_infer_request(data)
        return
    servicer = KServeServicer(service)
    expected = outcome(servicer.ModelInfer(plain, CONTEXT))
    got = outcome(servicer.ModelInfer(parse_infer_request(data), CONTEXT))
    if isinstance(expected, OvserveError):
        assert isinstance(got, OvserveError)
        assert (got.code, got.text) == (expected.code, expected.text)
        return
    assert not isinstance(got, OvserveError), got.text
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )
    # Mutated bytes can decode to NaN/Inf (inf + -inf is NaN): expected, so no warning.
    with np.errstate(all="ignore"):
        values = np.frombuffer(plain.raw_input_contents[0], np.float32)
        total = np.float32(values.sum(dtype=np.float64))
    np.testing.assert_array_equal(_kserve_values(got), np.full(ROWS * 3, total))


@FUZZ
@given(edits=EDITS)
def test_mutated_tfs_requests(service: ServingService, edits: list[tuple[int, int]]) -> None:
    data = mutate(large_predict_request(), edits)
    try:
        plain = predict_pb2.PredictRequest.FromString(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            parse_predict_request(data)
        return
    servicer = PredictionServicer(service)
    expected = outcome(servicer.Predict(plain, CONTEXT))
    got = outcome(servicer.Predict(parse_predict_request(data), CONTEXT))
    if isinstance(expected, OvserveError):
        assert isinstance(got, OvserveError)
        assert (got.code, got.text) == (expected.code, expected.text)
        return
    assert not isinstance(got, OvserveError), got.text
    assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
        deterministic=True
    )


class CountingTrimmer:
    def __init__(self) -> None:
        self.asked = 0

    def soon(self) -> None:
        self.asked += 1


def test_large_requests_ask_for_a_trim_after_the_burst() -> None:
    trimmer = CountingTrimmer()

    async def behavior(request: bytes, context: Any) -> bytes:
        return request

    plain = grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=bytes)
    handler = guard("/test.Service/Echo", plain, trimmer)  # type: ignore[arg-type]
    handler.request_deserializer(b"x" * (TRIM_AFTER_BYTES - 1))
    assert trimmer.asked == 0
    assert handler.request_deserializer(b"x" * TRIM_AFTER_BYTES) == b"x" * TRIM_AFTER_BYTES
    assert trimmer.asked == 1
