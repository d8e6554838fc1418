"""OVMS's preprocessing options: ``--mean``, ``--scale``, ``--color_format``, ``--precision``.

They make the server adapt what a client sends to what the model wants, inside the OpenVINO
graph: the client's tensor is converted to another colour order, then to another element type,
then the mean is subtracted and the result divided by the scale, per channel in the client's
layout; OpenVINO then converts to the model's own type and layout. So OVMS's ONNX demo serves a
float NCHW ResNet to clients that send UINT8 NHWC BGR pictures.

Syntax and texts are OVMS's:

- mean / scale: one float (``"1.0"``) or a list in ``[...]`` or ``(...)`` (``"[123.675,116.28,
  103.53]"``); spaces are ignored. Otherwise ``The provided float is in wrong format``.
- color_format ``A:B``: the client sends **B** and the server converts it to A (``BGR:RGB``
  means the client sends RGB). Names: RGB, BGR, GRAY, NV12, NV12_2, I420, I420_3.
- precision ``A:B``: the client sends **A** and the server converts it to B before mean and
  scale (``uint8:fp32``). Names: BF16, FP64, FP32, FP16, INT64 ... UINT8, UINT4, UINT1.

On OVMS's command line each needs ``--layout`` (exit 64 otherwise); a value in the wrong format
stops OVMS with exit status 1 when its model manager starts, and ovserve does the same. OVMS's
config.json schema rejects the four keys; ovserve accepts them there too, with the same syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ovserve.errors import ConfigError

FLOAT_WRONG_FORMAT: Final = "The provided float is in wrong format"
COLOR_FORMAT_WRONG_FORMAT: Final = "The provided color format is in wrong format"
PRECISION_WRONG_FORMAT: Final = "The provided precision is in wrong format"

COLOR_FORMATS: Final = ("RGB", "BGR", "GRAY", "NV12", "NV12_2", "I420", "I420_3")
PRECISIONS: Final = (
    "BF16",
    "FP64",
    "FP32",
    "FP16",
    "INT64",
    "INT32",
    "INT16",
    "INT8",
    "INT4",
    "UINT64",
    "UINT32",
    "UINT16",
    "UINT8",
    "UINT4",
    "UINT1",
)

FloatValue = float | tuple[float, ...]
"""One value for every channel, or one per channel."""

_FLOAT: Final = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:E[+-]?\d+)?$")
"""What ``std::stof`` consumes whole, without NaN and infinities (the text is upper-cased)."""


class PreprocessingValueError(ConfigError):
    """A mean, scale, colour format or precision in the wrong format.

    OVMS finds these when its model manager starts, not while parsing flags, so it exits with
    status 1 rather than the 64 of a usage error; ovserve keeps that difference.
    """


@dataclass(frozen=True, slots=True)
class ColorConversion:
    """``--color_format A:B``: the client sends ``client`` (B), the model gets ``converted`` (A)."""

    client: str
    converted: str

    def __str__(self) -> str:
        return f"{self.converted}:{self.client}"


@dataclass(frozen=True, slots=True)
class PrecisionConversion:
    """``--precision A:B``: the client sends ``client`` (A), converted to ``converted`` (B)."""

    client: str
    converted: str

    def __str__(self) -> str:
        return f"{self.client}:{self.converted}"


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """The four options of one model; all None means no preprocessing."""

    mean: FloatValue | None = None
    scale: FloatValue | None = None
    color_format: ColorConversion | None = None
    precision: PrecisionConversion | None = None

    def __bool__(self) -> bool:
        return any(
            value is not None
            for value in (self.mean, self.scale, self.color_format, self.precision)
        )


NO_PREPROCESSING: Final = Preprocessing()


def parse_float_value(text: str, what: str) -> FloatValue:
    """A mean or scale: ``"1.0"``, ``"[1,2,3]"`` or ``"(1,2,3)"`` (OVMS: parseFloatArrayOrValue)."""
    value = text.upper().replace(" ", "")
    if (value.startswith("[") and value.endswith("]")) or (
        value.startswith("(") and value.endswith(")")
    ):
        tokens = value[1:-1].split(",")
        if tokens[-1] == "":  # OVMS tokenizes with getline, which drops one trailing comma
            tokens.pop()
        return tuple(_parse_float(token, what, text) for token in tokens)
    return _parse_float(value, what, text)


def _parse_float(token: str, what: str, text: str) -> float:
    if not _FLOAT.match(token):
        raise PreprocessingValueError(
            f"Couldn't parse {what} parameter: {FLOAT_WRONG_FORMAT} ({text!r})"
        )
    return float(token)


def parse_color_format(text: str) -> ColorConversion:
    """``TARGET:SOURCE`` colour formats, e.g. ``BGR:RGB`` (the client sends RGB)."""
    converted, client = _split_pair(text, COLOR_FORMATS, "color format", COLOR_FORMAT_WRONG_FORMAT)
    return ColorConversion(client=client, converted=converted)


def parse_precision(text: str) -> PrecisionConversion:
    """``CLIENT:CONVERTED`` element types, e.g. ``uint8:fp32`` (the client sends UINT8)."""
    client, converted = _split_pair(text, PRECISIONS, "precision", PRECISION_WRONG_FORMAT)
    return PrecisionConversion(client=client, converted=converted)


def _split_pair(text: str, names: tuple[str, ...], what: str, error: str) -> tuple[str, str]:
    value = text.upper()
    first, colon, second = value.partition(":")
    if not colon or first not in names or second not in names:
        raise PreprocessingValueError(
            f"Couldn't parse {what} parameter: {error} ({text!r}; expected A:B with A and B "
            f"among {', '.join(names)})"
        )
    return first, second


def parse_preprocessing(
    mean: str | None = None,
    scale: str | None = None,
    color_format: str | None = None,
    precision: str | None = None,
) -> Preprocessing:
    """The four options as given (None: not given); PreprocessingValueError on a bad value."""
    return Preprocessing(
        mean=None if mean is None else parse_float_value(mean, "mean"),
        scale=None if scale is None else parse_float_value(scale, "scale"),
        color_format=None if color_format is None else parse_color_format(color_format),
        precision=None if precision is None else parse_precision(precision),
    )


def require_layout(given: dict[str, str | None], layout: str | None) -> None:
    """OVMS's command-line rule: any of the four needs ``--layout`` (checked in flag order)."""
    if layout:
        return
    for flag, value in given.items():
        if value is not None:
            raise ConfigError(
                f"error parsing options - --{flag} parameter requires --layout to be set"
            )
