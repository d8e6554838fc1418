"""The one error vocabulary of ovserve.

Every failure a client can see is an :class:`OvserveError` carrying an :class:`ErrorCode`.
The code decides the gRPC and HTTP status (``frontends/status_mapping.py`` maps each code once);
the text follows OVMS: ``<message> - <details>``.

Tree::

    OvserveError
    ├── ModelNotFound            MODEL_NAME_MISSING         unknown model name
    ├── VersionNotFound          MODEL_VERSION_MISSING      unknown version
    ├── ModelNotReady            MODEL_VERSION_NOT_LOADED_YET  version still loading
    ├── ModelRetired             MODEL_VERSION_NOT_LOADED_ANYMORE  version unloaded
    ├── InvalidInput             INVALID_* (number of inputs, missing input, precision, content...)
    │   └── ShapeMismatch        INVALID_SHAPE / INVALID_BATCH_SIZE / INVALID_NO_OF_SHAPE_DIMENSIONS
    ├── ReshapeFailed            RESHAPE_ERROR
    ├── InferenceFailed          INFERENCE_ERROR            the engine failed on valid input
    ├── ServerNotReady           SERVER_NOT_READY
    ├── RequestTooLarge          REQUEST_TOO_LARGE
    ├── ServerBusy               RESOURCE_EXHAUSTED         memory quota or connection cap
    └── ConfigError              CONFIG_ERROR               bad flags, config or model repository
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Status codes, named after OVMS's ``StatusCode`` where one exists."""

    INVALID_NO_OF_INPUTS = "Invalid number of inputs"
    INVALID_MISSING_INPUT = "Missing input with specific name"
    INVALID_UNEXPECTED_INPUT = "Unexpected input"
    INVALID_NO_OF_SHAPE_DIMENSIONS = "Invalid number of shape dimensions"
    INVALID_BATCH_SIZE = "Invalid input batch size"
    INVALID_SHAPE = "Invalid input shape"
    INVALID_PRECISION = "Invalid input precision"
    INVALID_CONTENT_SIZE = "Invalid content size of tensor proto"
    INVALID_VALUE_COUNT = "Invalid number of values in tensor proto container"
    INVALID_OUTPUT = "Invalid output name"
    INVALID_ARGUMENT = "Invalid argument"
    UNSUPPORTED_LAYOUT = (
        "Received binary image input but resource not configured to accept NHWC layout"
    )
    MODEL_SPEC_MISSING = "model_spec missing in request"
    MODEL_VERSION_INVALID_FORMAT = "invalid model version format in request"
    INVALID_SIGNATURE_DEF = "Invalid signature name"
    MODEL_NAME_MISSING = "Model with requested name is not found"
    MODEL_VERSION_MISSING = "Model with requested version is not found"
    MODEL_VERSION_NOT_LOADED_YET = "Model with requested version is not loaded yet"
    MODEL_VERSION_NOT_LOADED_ANYMORE = "Model with requested version is retired"
    RESHAPE_ERROR = "Model could not be reshaped with requested shape"
    INFERENCE_ERROR = "Internal inference error"
    SERVER_NOT_READY = "Server is not ready"
    REQUEST_TOO_LARGE = "Request is larger than the configured limit"
    REST_UNSUPPORTED_METHOD = "Unsupported method"
    REST_NOT_FOUND = "Requested REST resource not found"
    CONFIG_ERROR = "Configuration error"
    INTERNAL = "Internal server error"
    RESOURCE_EXHAUSTED = "Server is too busy to take this request now; retry later"
    # REST body parsing and binary (image) inputs, with OVMS's texts.
    JSON_INVALID = "The file is not valid json"
    JSON_NESTING_DEPTH_EXCEEDED = "JSON nesting depth exceeds the limit"
    REST_BODY_IS_NOT_AN_OBJECT = "Request body should be JSON object"
    REST_PREDICT_UNKNOWN_ORDER = "Invalid JSON structure. Could not detect row or column format"
    REST_INSTANCES_NOT_AN_ARRAY = "Invalid JSON structure. Nonamed instance is not an array."
    REST_NAMED_INSTANCE_NOT_AN_OBJECT = (
        "Invalid JSON structure. One of named instances is not a JSON object."
    )
    REST_NO_INSTANCES_FOUND = "Invalid JSON structure. Missing instances in row format"
    REST_INSTANCES_NOT_NAMED_OR_NONAMED = "Could not detect neither named or nonamed format"
    REST_COULD_NOT_PARSE_INSTANCE = "Could not parse instance content. Not valid ndarray detected"
    REST_INSTANCES_BATCH_SIZE_DIFFER = (
        "Invalid JSON structure. Request inputs have different batch sizes"
    )
    REST_INPUTS_NOT_AN_OBJECT = "Invalid JSON structure. One of inputs is not a JSON object."
    REST_NO_INPUTS_FOUND = "Invalid JSON structure, missing inputs"
    REST_COULD_NOT_PARSE_INPUT = "Could not parse input content. Not valid ndarray detected"
    REST_COULD_NOT_PARSE_OUTPUT = "Could not parse output content."
    REST_COULD_NOT_PARSE_PARAMETERS = "Could not parse request parameters"
    REST_BASE64_DECODE_ERROR = "Decode Base64 to string error"
    REST_BINARY_DATA_SIZE_PARAMETER_INVALID = (
        "binary_data_size parameter is invalid and cannot be parsed"
    )
    REST_BINARY_BUFFER_EXCEEDED = (
        "Received buffer size is smaller than binary_data_size parameter indicates"
    )
    REST_INFERENCE_HEADER_CONTENT_LENGTH_INVALID = (
        "Inference-Header-Content-Length header is invalid and couldn't be parsed"
    )
    REST_CONTENTS_FIELD_NOT_EMPTY = (
        "Request contains values both in binary data and in content value"
    )
    IMAGE_PARSING_FAILED = "Image parsing failed"
    INVALID_NO_OF_CHANNELS = "Invalid number of channels in binary input"
    BINARY_IMAGES_RESOLUTION_MISMATCH = (
        "Binary input images for this endpoint are required to have the same resolution"
    )

    @property
    def message(self) -> str:
        """OVMS's message text for this code."""
        return self.value


class OvserveError(Exception):
    """Base of every error ovserve reports to a client or at start-up."""

    default_code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, details: str = "", code: ErrorCode | None = None) -> None:
        self.code = code or self.default_code
        self.details = details
        super().__init__(self.text)

    @property
    def text(self) -> str:
        """The wire text: ``<message> - <details>``, or the message alone."""
        if self.details:
            return f"{self.code.message} - {self.details}"
        return self.code.message


class ModelNotFound(OvserveError):
    """No model with the requested name."""

    default_code = ErrorCode.MODEL_NAME_MISSING


class VersionNotFound(OvserveError):
    """The model exists but not the requested version."""

    default_code = ErrorCode.MODEL_VERSION_MISSING


class ModelNotReady(OvserveError):
    """The version is known but not yet AVAILABLE."""

    default_code = ErrorCode.MODEL_VERSION_NOT_LOADED_YET


class ModelRetired(OvserveError):
    """The version was unloaded."""

    default_code = ErrorCode.MODEL_VERSION_NOT_LOADED_ANYMORE


class InvalidInput(OvserveError):
    """The request does not fit the model's inputs."""

    default_code = ErrorCode.INVALID_ARGUMENT


class ShapeMismatch(InvalidInput):
    """An input's shape does not match the model's (partial) shape."""

    default_code = ErrorCode.INVALID_SHAPE


class ReshapeFailed(OvserveError):
    """The model could not be reshaped to the requested shape."""

    default_code = ErrorCode.RESHAPE_ERROR


class InferenceFailed(OvserveError):
    """The engine failed on an input that passed validation."""

    default_code = ErrorCode.INFERENCE_ERROR


class ServerNotReady(OvserveError):
    """The server is starting or stopping."""

    default_code = ErrorCode.SERVER_NOT_READY


class RequestTooLarge(OvserveError):
    """The request exceeds a configured size limit."""

    default_code = ErrorCode.REQUEST_TOO_LARGE


class ServerBusy(OvserveError):
    """A shared resource (request memory, connections) is used up for now."""

    default_code = ErrorCode.RESOURCE_EXHAUSTED


class ConfigError(OvserveError):
    """Flags, config.json or the model repository are invalid.

    ``text`` may reach clients (status replies, ``GET /v1/config``), so it never names a
    filesystem path; ``log_text`` is the same message with such local details, for the log.
    """

    default_code = ErrorCode.CONFIG_ERROR

    def __init__(
        self, details: str = "", code: ErrorCode | None = None, *, log_text: str = ""
    ) -> None:
        super().__init__(details, code)
        self._log_text = log_text

    @property
    def log_text(self) -> str:
        """The message for the server log: ``text`` with local details such as paths."""
        return self._log_text or self.text

    @property
    def text(self) -> str:
        """Start-up errors read best without the generic prefix."""
        return self.details or self.code.message
