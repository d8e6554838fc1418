"""The error tree: codes, OVMS texts, and start-up errors."""

from __future__ import annotations

import pytest

from ovserve import errors
from ovserve.errors import ErrorCode, OvserveError


@pytest.mark.parametrize(
    ("error_type", "code"),
    [
        (errors.ModelNotFound, ErrorCode.MODEL_NAME_MISSING),
        (errors.VersionNotFound, ErrorCode.MODEL_VERSION_MISSING),
        (errors.ModelNotReady, ErrorCode.MODEL_VERSION_NOT_LOADED_YET),
        (errors.ModelRetired, ErrorCode.MODEL_VERSION_NOT_LOADED_ANYMORE),
        (errors.InvalidInput, ErrorCode.INVALID_ARGUMENT),
        (errors.ShapeMismatch, ErrorCode.INVALID_SHAPE),
        (errors.ReshapeFailed, ErrorCode.RESHAPE_ERROR),
        (errors.InferenceFailed, ErrorCode.INFERENCE_ERROR),
        (errors.ServerNotReady, ErrorCode.SERVER_NOT_READY),
        (errors.RequestTooLarge, ErrorCode.REQUEST_TOO_LARGE),
        (errors.ConfigError, ErrorCode.CONFIG_ERROR),
    ],
)
def test_default_codes(error_type: type[OvserveError], code: ErrorCode) -> None:
    error = error_type()
    assert isinstance(error, OvserveError)
    assert error.code is code
    assert error.text == code.message
    assert str(error) == code.message


def test_text_is_message_dash_details() -> None:
    error = errors.ShapeMismatch("Expected: (1,3); Actual: (1,4); input name: data")
    assert error.text == "Invalid input shape - Expected: (1,3); Actual: (1,4); input name: data"
    assert str(error) == error.text


def test_explicit_code_overrides_the_default() -> None:
    error = errors.InvalidInput("Expected: 1; Actual: 2", ErrorCode.INVALID_NO_OF_INPUTS)
    assert error.code is ErrorCode.INVALID_NO_OF_INPUTS
    assert error.text == "Invalid number of inputs - Expected: 1; Actual: 2"


def test_shape_mismatch_is_invalid_input() -> None:
    assert issubclass(errors.ShapeMismatch, errors.InvalidInput)


def test_config_error_text_is_the_details_alone() -> None:
    assert errors.ConfigError("port and rest_port cannot both be unset").text == (
        "port and rest_port cannot both be unset"
    )
    assert errors.ConfigError().text == "Configuration error"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (ErrorCode.INVALID_SHAPE, "Invalid input shape"),
        (ErrorCode.INVALID_BATCH_SIZE, "Invalid input batch size"),
        (ErrorCode.INVALID_NO_OF_SHAPE_DIMENSIONS, "Invalid number of shape dimensions"),
        (ErrorCode.INVALID_PRECISION, "Invalid input precision"),
        (ErrorCode.INVALID_NO_OF_INPUTS, "Invalid number of inputs"),
        (ErrorCode.INVALID_MISSING_INPUT, "Missing input with specific name"),
        (ErrorCode.INVALID_CONTENT_SIZE, "Invalid content size of tensor proto"),
        (ErrorCode.INVALID_VALUE_COUNT, "Invalid number of values in tensor proto container"),
        (ErrorCode.RESHAPE_ERROR, "Model could not be reshaped with requested shape"),
        (ErrorCode.MODEL_NAME_MISSING, "Model with requested name is not found"),
        (ErrorCode.MODEL_VERSION_MISSING, "Model with requested version is not found"),
        (ErrorCode.MODEL_VERSION_NOT_LOADED_YET, "Model with requested version is not loaded yet"),
        (ErrorCode.MODEL_VERSION_NOT_LOADED_ANYMORE, "Model with requested version is retired"),
        (ErrorCode.MODEL_SPEC_MISSING, "model_spec missing in request"),
        (ErrorCode.INVALID_SIGNATURE_DEF, "Invalid signature name"),
        (ErrorCode.REST_UNSUPPORTED_METHOD, "Unsupported method"),
        (ErrorCode.REST_NOT_FOUND, "Requested REST resource not found"),
        (
            ErrorCode.UNSUPPORTED_LAYOUT,
            "Received binary image input but resource not configured to accept NHWC layout",
        ),
    ],
)
def test_ovms_messages(code: ErrorCode, message: str) -> None:
    assert code.message == message


def test_messages_are_unique() -> None:
    messages = [code.message for code in ErrorCode]
    assert len(messages) == len(set(messages))
