"""The ``--layout`` value."""

from __future__ import annotations

import numpy as np
import pytest

from ovserve.config.layout import Layout, parse_layout, parse_layout_param
from ovserve.config.shape import ANONYMOUS_INPUT
from ovserve.errors import ConfigError


def test_target_and_source() -> None:
    layout = parse_layout("NHWC:NCHW")
    assert layout == Layout("NHWC", "NCHW")
    assert layout.needs_transpose
    assert str(layout) == "NHWC:NCHW"


def test_tag_only() -> None:
    layout = parse_layout(" nchw ")
    assert layout == Layout("NCHW")
    assert not layout.needs_transpose
    assert layout.permutation() == [0, 1, 2, 3]
    assert str(layout) == "NCHW"


def test_same_layout_on_both_sides_needs_no_transpose() -> None:
    assert not parse_layout("NCHW:NCHW").needs_transpose


def test_permutation_turns_target_into_source() -> None:
    layout = parse_layout("NHWC:NCHW")
    assert layout.permutation() == [0, 3, 1, 2]
    nhwc = np.zeros((1, 224, 300, 3))
    assert nhwc.transpose(layout.permutation()).shape == (1, 3, 224, 300)


@pytest.mark.parametrize("text", ["N...", "N?HW", "...C", "CN:NC", "N...:N..."])
def test_accepted_forms(text: str) -> None:
    assert str(parse_layout(text)) == text


@pytest.mark.parametrize("text", ["", "NXHW", "NHWC:NCH", "NHWC:NCHW:NC", "N..", "NH WC", "N,C"])
def test_errors(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^Couldn't parse layout parameter"):
        parse_layout(text)


def test_param_single_binds_to_the_anonymous_input() -> None:
    assert parse_layout_param("NHWC:NCHW") == {ANONYMOUS_INPUT: Layout("NHWC", "NCHW")}


def test_param_json_per_tensor() -> None:
    assert parse_layout_param('{"data": "NHWC:NCHW", "out": "CN:NC"}') == {
        "data": Layout("NHWC", "NCHW"),
        "out": Layout("CN", "NC"),
    }
    assert parse_layout_param({"data": "NCHW"}) == {"data": Layout("NCHW")}


@pytest.mark.parametrize("value", ['{"data": ', '{"data": 1}', ["NCHW"], 3, '{"a": "NQ"}'])
def test_param_errors(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^Couldn't parse layout parameter"):
        parse_layout_param(value)
