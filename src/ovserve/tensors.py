"""Tensors as the serving core sees them: a name, a datatype, a shape and the data.

Datatypes use the KServe names (``FP32``...), which are also the names OVMS prints in its
precision errors. Front-ends translate their wire datatypes to :class:`DataType` in their codecs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ovserve.config.shape import Shape


class DataType(enum.Enum):
    """Tensor element types the server accepts, with their numpy dtype."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype that holds this type (``object`` for BYTES)."""
        return _NUMPY[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element in a raw buffer (0 for variable-length BYTES)."""
        return 0 if self is DataType.BYTES else _NUMPY[self].itemsize

    @classmethod
    def from_numpy(cls, dtype: np.dtype[Any]) -> DataType:
        """The DataType for a numpy dtype; raises KeyError for types the server does not serve."""
        found = _FROM_NUMPY.get(dtype)  # an array's dtype: no conversion (per reply, per output)
        return found if found is not None else _FROM_NUMPY[np.dtype(dtype)]

    @classmethod
    def from_name(cls, name: str) -> DataType | None:
        """The DataType with this KServe name, or None."""
        try:
            return _BY_NAME.get(name)  # a dict: calling the Enum costs more (per request, input)
        except TypeError:  # unhashable (a JSON list or object)
            return None


_BY_NAME: dict[str, DataType] = {datatype.value: datatype for datatype in DataType}

_NUMPY: dict[DataType, np.dtype[Any]] = {
    DataType.BOOL: np.dtype(np.bool_),
    DataType.UINT8: np.dtype(np.uint8),
    DataType.UINT16: np.dtype(np.uint16),
    DataType.UINT32: np.dtype(np.uint32),
    DataType.UINT64: np.dtype(np.uint64),
    DataType.INT8: np.dtype(np.int8),
    DataType.INT16: np.dtype(np.int16),
    DataType.INT32: np.dtype(np.int32),
    DataType.INT64: np.dtype(np.int64),
    DataType.FP16: np.dtype(np.float16),
    DataType.FP32: np.dtype(np.float32),
    DataType.FP64: np.dtype(np.float64),
    DataType.BYTES: np.dtype(np.object_),
}
_FROM_NUMPY = {dtype: datatype for datatype, dtype in _NUMPY.items()}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One model input or output as clients see it."""

    name: str
    datatype: DataType
    shape: Shape
    layout: str | None = None


@dataclass(frozen=True, slots=True)
class RequestTensor:
    """One input as a client sent it, before validation.

    ``data`` is either a raw little-endian buffer (bytes, memoryview...) to be checked against
    ``shape`` and ``datatype``, or an already-typed numpy array from a typed container
    (KServe ``contents``, TFS ``*_val``, JSON), whose value count is checked instead.
    BYTES inputs carry a list of ``bytes`` values.
    """

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: bytes | memoryview | npt.NDArray[Any] | list[bytes]


@dataclass(frozen=True, slots=True)
class InferResult:
    """Outputs of one inference, by output name, in the order the model declares them."""

    model_name: str
    model_version: int
    outputs: dict[str, npt.NDArray[Any]]
    wait_us: float = 0.0
    """Time waiting for a free infer request."""
    infer_us: float = 0.0
    """Time in the engine."""
