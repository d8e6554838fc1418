"""mapping_config.json: aliases for input and output names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovserve.config.mapping import TensorMapping, parse_mapping, read_mapping
from ovserve.errors import ConfigError


def test_parse_and_look_up() -> None:
    mapping = parse_mapping({"inputs": {"data:0": "image"}, "outputs": {"prob": "scores"}})
    assert mapping
    assert mapping.input_alias({"data", "data:0"}) == "image"
    assert mapping.input_alias({"other"}) is None
    assert mapping.output_alias({"prob"}) == "scores"
    assert mapping.real_input("image") == "data:0"
    assert mapping.real_input("unmapped") == "unmapped"


def test_empty_mapping_is_false() -> None:
    assert not TensorMapping()
    assert not parse_mapping({})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "expected a JSON object"),
        ({"input": {}}, "unknown key 'input'"),
        ({"inputs": {"a": 1}}, "inputs must map real names to non-empty alias strings"),
        ({"outputs": {"a": ""}}, "outputs must map"),
        ({"inputs": {"a": "x", "b": "x"}}, "inputs alias 'x' is used twice"),
    ],
)
def test_invalid(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mapping(value)


def test_read_from_a_version_folder(tmp_path: Path) -> None:
    assert read_mapping(tmp_path) == TensorMapping()
    (tmp_path / "mapping_config.json").write_text(json.dumps({"inputs": {"a": "alias"}}))
    assert read_mapping(tmp_path) == TensorMapping({"a": "alias"}, {})
    (tmp_path / "mapping_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"mapping_config\.json: cannot read a JSON object"):
        read_mapping(tmp_path)
