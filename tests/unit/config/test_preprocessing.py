"""OVMS's --mean/--scale/--color_format/--precision syntax (cases from OVMS's own unit tests)."""

from __future__ import annotations

import pytest

from ovserve.config.preprocessing import (
    COLOR_FORMAT_WRONG_FORMAT,
    FLOAT_WRONG_FORMAT,
    PRECISION_WRONG_FORMAT,
    ColorConversion,
    PrecisionConversion,
    Preprocessing,
    PreprocessingValueError,
    parse_color_format,
    parse_float_value,
    parse_precision,
    parse_preprocessing,
    require_layout,
)
from ovserve.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[123.675,116.28,103.53]", (123.675, 116.28, 103.53)),
        ("  [ 0.0 , 255.0 ,128.5 ] ", (0.0, 255.0, 128.5)),
        ("1.0", 1.0),
        ("(123.675,116.28,103.53)", (123.675, 116.28, 103.53)),
        ("[1,2,]", (1.0, 2.0)),
        ("[]", ()),
        ("-2.5e1", -25.0),
        (".5", 0.5),
    ],
)
def test_valid_floats(text: str, expected: object) -> None:
    assert parse_float_value(text, "mean") == expected


@pytest.mark.parametrize(
    "text",
    [
        "[a;b;c]",
        "[123.675,abc,103.53]",
        "one.point.zero",
        '{"a": 1}',
        "123.675,116.28,103.53",
        "[1,,2]",
        "nan",
        "[inf]",
        "1_0",
        "",
        "[1,2",
    ],
)
def test_floats_in_wrong_format(text: str) -> None:
    with pytest.raises(PreprocessingValueError) as caught:
        parse_float_value(text, "scale")
    assert caught.value.text.startswith(f"Couldn't parse scale parameter: {FLOAT_WRONG_FORMAT}")


def test_color_format_sides() -> None:
    """BGR:RGB: the client sends RGB (the second name), converted to BGR."""
    assert parse_color_format("BGR:RGB") == ColorConversion(client="RGB", converted="BGR")
    assert parse_color_format("bgr:nv12") == ColorConversion(client="NV12", converted="BGR")
    assert str(parse_color_format("rgb:i420_3")) == "RGB:I420_3"


@pytest.mark.parametrize(
    "text", ["RGB", "RGB:BGR:RGB", "RGB::BGR", ":RGB", "BGR:", " RGB:BGR", "RGBA:BGR"]
)
def test_color_formats_in_wrong_format(text: str) -> None:
    with pytest.raises(PreprocessingValueError) as caught:
        parse_color_format(text)
    assert COLOR_FORMAT_WRONG_FORMAT in caught.value.text


def test_precision_sides() -> None:
    """uint8:fp32: the client sends UINT8 (the first name), converted to FP32."""
    assert parse_precision("uint8:fp32") == PrecisionConversion(client="UINT8", converted="FP32")
    assert parse_precision("FP16:FP16") == PrecisionConversion(client="FP16", converted="FP16")


@pytest.mark.parametrize(
    "text", ["FLOAT32", "int8", "FP32-FP64", "FP32::FP64", "FP32:", ":FP64", "FP32:FP16:INT8"]
)
def test_precisions_in_wrong_format(text: str) -> None:
    with pytest.raises(PreprocessingValueError) as caught:
        parse_precision(text)
    assert PRECISION_WRONG_FORMAT in caught.value.text


def test_parse_all_four_and_nothing() -> None:
    parsed = parse_preprocessing("[1,2,3]", "2", "BGR:RGB", "uint8:fp32")
    assert parsed == Preprocessing(
        (1.0, 2.0, 3.0), 2.0, ColorConversion("RGB", "BGR"), PrecisionConversion("UINT8", "FP32")
    )
    assert parsed
    assert not parse_preprocessing()


@pytest.mark.parametrize("flag", ["mean", "scale", "color_format", "precision"])
def test_each_needs_a_layout(flag: str) -> None:
    given: dict[str, str | None] = {
        "mean": None,
        "scale": None,
        "color_format": None,
        "precision": None,
    }
    given[flag] = "x"
    with pytest.raises(ConfigError) as caught:
        require_layout(given, None)
    assert (
        caught.value.text
        == f"error parsing options - --{flag} parameter requires --layout to be set"
    )
    require_layout(given, "NCHW")
    require_layout({"mean": None}, None)
