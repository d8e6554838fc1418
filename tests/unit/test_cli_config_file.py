"""``--config_path``: the file is parsed at start-up into the ServerConfig."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ovserve.cli import parse_args
from ovserve.errors import ConfigError


def write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return str(path)


def entry(name: str) -> dict[str, Any]:
    return {"config": {"name": name, "base_path": name}}


def test_models_come_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"model_config_list": [entry("a"), entry("b")]})
    config = parse_args(["--config_path", path, "--port", "9000", "--cache_dir", "/c"])
    assert config.config_file is not None
    assert [model.name for model in config.models] == ["a", "b"]
    assert config.models[0].base_path == tmp_path / "a"
    assert config.models[0].cache_dir == Path("/c")
    assert config.cache_dir == Path("/c")
    assert not config.metrics_enable


def test_monitoring_sets_metrics(tmp_path: Path) -> None:
    metrics = {"enable": True, "metrics_list": ["ovms_requests_success"]}
    path = write(tmp_path, {"model_config_list": [], "monitoring": {"metrics": metrics}})
    config = parse_args(["--config_path", path, "--port", "9000", "--rest_port", "9001"])
    assert config.metrics_enable
    assert config.metrics_list == ("ovms_requests_success",)


def test_monitoring_needs_the_rest_port(tmp_path: Path) -> None:
    path = write(tmp_path, {"monitoring": {"metrics": {"enable": True}}})
    with pytest.raises(ConfigError, match="rest_port setting is missing"):
        parse_args(["--config_path", path, "--port", "9000"])


def test_invalid_file_stops_start_up(tmp_path: Path) -> None:
    path = write(tmp_path, {"model_config_list": [{"config": {"name": "a"}}]})
    with pytest.raises(ConfigError, match=r"model_config_list\[0\]\.config: missing required"):
        parse_args(["--config_path", path, "--port", "9000"])


def test_missing_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Config file not found or cannot open"):
        parse_args(["--config_path", str(tmp_path / "nope.json"), "--port", "9000"])
