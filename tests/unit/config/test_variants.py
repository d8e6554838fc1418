"""Shape-variant settings: defaults, flags, config.json keys and their errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ovserve.cli import parse_args
from ovserve.config.config_file import parse_config
from ovserve.config.variants import (
    DEFAULT_MAX_SHAPE_VARIANTS,
    VariantConfig,
    parse_variant_config,
)
from ovserve.errors import ConfigError

FLAGS = ["--model_name", "m", "--model_path", "/models/m", "--port", "9000"]


def test_defaults_are_on_with_a_bound() -> None:
    config = parse_variant_config({})
    assert config == VariantConfig()
    assert config.enabled
    assert config.max_variants == DEFAULT_MAX_SHAPE_VARIANTS > 0


def test_zero_turns_variants_off() -> None:
    assert not parse_variant_config({"max_shape_variants": 0}).enabled


def test_flags_reach_the_model_config() -> None:
    args = [*FLAGS, "--max_shape_variants", "2", "--shape_variant_threshold", "5"]
    args += ["--shape_variant_window_seconds", "2.5", "--idle_memory_release_seconds", "0"]
    (model,) = parse_args(args).models
    assert model.variants == VariantConfig(2, 5, 2.5, 0.0)


@pytest.mark.parametrize(
    ("flag", "value", "text"),
    [
        ("--max_shape_variants", "-1", "max_shape_variants: must be at least 0"),
        ("--shape_variant_threshold", "0", "shape_variant_threshold: must be at least 1"),
        ("--shape_variant_window_seconds", "0", "shape_variant_window_seconds: must be at least"),
        ("--idle_memory_release_seconds", "-2", "idle_memory_release_seconds: must be at least 0"),
    ],
)
def test_bad_flag_values_are_refused(flag: str, value: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        parse_args([*FLAGS, flag, value])


def test_flags_are_exclusive_with_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_config_list": []}))
    with pytest.raises(ConfigError, match="exclusive with the config file"):
        parse_args(["--config_path", str(path), "--port", "9000", "--max_shape_variants", "1"])


def parse(config: Mapping[str, Any]) -> Any:
    document = {"model_config_list": [{"config": {"name": "m", "base_path": "m", **config}}]}
    return parse_config(json.dumps(document).encode(), Path("/c/config.json"))


def test_config_file_keys() -> None:
    settings: dict[str, float] = {"max_shape_variants": 1, "shape_variant_threshold": 4}
    settings |= {"shape_variant_window_seconds": 30, "idle_memory_release_seconds": 0.5}
    parsed = parse(settings)
    assert parsed.models[0].variants == VariantConfig(1, 4, 30.0, 0.5)


def test_a_bad_value_fails_only_that_model_and_says_where() -> None:
    parsed = parse({"shape_variant_threshold": 0})
    assert parsed.models == ()
    assert parsed.errors[0].text == (
        "model_config_list[0].config.shape_variant_threshold: must be at least 1, got 0"
    )


def test_a_wrong_json_type_rejects_the_file() -> None:
    with pytest.raises(ConfigError, match="max_shape_variants: expected a non-negative integer"):
        parse({"max_shape_variants": "4"})
    with pytest.raises(ConfigError, match="max_shape_variants: expected a non-negative integer"):
        parse({"max_shape_variants": 1.5})
    with pytest.raises(ConfigError, match="idle_memory_release_seconds: expected a non-negative"):
        parse({"idle_memory_release_seconds": True})
