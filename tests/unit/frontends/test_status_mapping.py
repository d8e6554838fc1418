"""The one ErrorCode → (gRPC, HTTP) table."""

from __future__ import annotations

import grpc
import pytest

from ovserve.errors import ErrorCode
from ovserve.frontends.status_mapping import STATUS, grpc_status, http_status


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_is_mapped(code: ErrorCode) -> None:
    assert isinstance(grpc_status(code), grpc.StatusCode)
    assert grpc_status(code) is not grpc.StatusCode.OK
    assert 400 <= http_status(code) <= 599


def test_table_has_exactly_the_enum() -> None:
    assert set(STATUS) == set(ErrorCode)


@pytest.mark.parametrize(
    ("code", "grpc_code", "http"),
    [
        (ErrorCode.INVALID_SHAPE, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_BATCH_SIZE, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_PRECISION, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_NO_OF_INPUTS, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_MISSING_INPUT, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_CONTENT_SIZE, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_VALUE_COUNT, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.UNSUPPORTED_LAYOUT, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.MODEL_SPEC_MISSING, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.MODEL_VERSION_INVALID_FORMAT, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.INVALID_SIGNATURE_DEF, grpc.StatusCode.INVALID_ARGUMENT, 400),
        (ErrorCode.RESHAPE_ERROR, grpc.StatusCode.FAILED_PRECONDITION, 412),
        (ErrorCode.MODEL_NAME_MISSING, grpc.StatusCode.NOT_FOUND, 404),
        (ErrorCode.MODEL_VERSION_MISSING, grpc.StatusCode.NOT_FOUND, 404),
        (ErrorCode.MODEL_VERSION_NOT_LOADED_YET, grpc.StatusCode.UNAVAILABLE, 404),
        (ErrorCode.MODEL_VERSION_NOT_LOADED_ANYMORE, grpc.StatusCode.NOT_FOUND, 404),
        (ErrorCode.SERVER_NOT_READY, grpc.StatusCode.UNAVAILABLE, 503),
        (ErrorCode.REST_UNSUPPORTED_METHOD, grpc.StatusCode.UNIMPLEMENTED, 406),
        (ErrorCode.REST_NOT_FOUND, grpc.StatusCode.NOT_FOUND, 404),
        (ErrorCode.REQUEST_TOO_LARGE, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
        (ErrorCode.INFERENCE_ERROR, grpc.StatusCode.INTERNAL, 500),
        (ErrorCode.INTERNAL, grpc.StatusCode.INTERNAL, 500),
    ],
)
def test_ovms_mapping(code: ErrorCode, grpc_code: grpc.StatusCode, http: int) -> None:
    assert grpc_status(code) is grpc_code
    assert http_status(code) == http


@pytest.mark.parametrize("code", [code for code in ErrorCode if code.name.startswith("INVALID_")])
def test_every_invalid_input_code_is_a_client_error(code: ErrorCode) -> None:
    assert grpc_status(code) is grpc.StatusCode.INVALID_ARGUMENT
    assert http_status(code) == 400
