"""The one table from ErrorCode to gRPC status and HTTP status (OVMS's mapping)."""

from __future__ import annotations

from typing import Final

import grpc

from ovserve.errors import ErrorCode

_C = grpc.StatusCode

STATUS: Final[dict[ErrorCode, tuple[grpc.StatusCode, int]]] = {
    ErrorCode.INVALID_NO_OF_INPUTS: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_MISSING_INPUT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_UNEXPECTED_INPUT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_BATCH_SIZE: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_SHAPE: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_PRECISION: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_CONTENT_SIZE: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_VALUE_COUNT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_OUTPUT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_ARGUMENT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.UNSUPPORTED_LAYOUT: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.MODEL_SPEC_MISSING: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.INVALID_SIGNATURE_DEF: (_C.INVALID_ARGUMENT, 400),
    ErrorCode.MODEL_NAME_MISSING: (_C.NOT_FOUND, 404),
    ErrorCode.MODEL_VERSION_MISSING: (_C.NOT_FOUND, 404),
    ErrorCode.MODEL_VERSION_NOT_LOADED_YET: (_C.UNAVAILABLE, 404),
    ErrorCode.MODEL_VERSION_NOT_LOADED_ANYMORE: (_C.NOT_FOUND, 404),
    ErrorCode.RESHAPE_ERROR: (_C.FAILED_PRECONDITION, 412),
    ErrorCode.INFERENCE_ERROR: (_C.INTERNAL, 500),
    ErrorCode.SERVER_NOT_READY: (_C.UNAVAILABLE, 503),
    ErrorCode.REQUEST_TOO_LARGE: (_C.RESOURCE_EXHAUSTED, 413),
    ErrorCode.REST_UNSUPPORTED_METHOD: (_C.UNIMPLEMENTED, 406),
    ErrorCode.REST_NOT_FOUND: (_C.NOT_FOUND, 404),
    ErrorCode.CONFIG_ERROR: (_C.FAILED_PRECONDITION, 400),
    ErrorCode.INTERNAL: (_C.INTERNAL, 500),
}


def grpc_status(code: ErrorCode) -> grpc.StatusCode:
    """The gRPC status for an error code."""
    return STATUS[code][0]


def http_status(code: ErrorCode) -> int:
    """The HTTP status for an error code."""
    return STATUS[code][1]
