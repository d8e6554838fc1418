"""Dynamic batching settings from flags and config.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ovserve import cli
from ovserve.config.batching import BatchingConfig, parse_batching_entry
from ovserve.config.config_file import parse_config
from ovserve.config.worker_slot import WorkerSlot
from ovserve.errors import ConfigError

DEFAULT = BatchingConfig()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, BatchingConfig(enabled=True)),
        (False, BatchingConfig(enabled=False)),
        ({}, BatchingConfig()),
        (
            {"enabled": True, "max_batch_size": 8, "max_queue_delay_microseconds": 100},
            BatchingConfig(True, 8, 100),
        ),
        ({"enabled": None, "max_batch_size": 4}, BatchingConfig(None, 4, 0)),
    ],
)
def test_config_json_values(value: Any, expected: BatchingConfig) -> None:
    assert parse_batching_entry(value, DEFAULT) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "should be true, false or an object"),
        ({"size": 3}, "unknown key size; allowed: enabled, max_batch_size"),
        ({"enabled": "on"}, "enabled should be true, false or null"),
        ({"max_batch_size": "8"}, "max_batch_size should be an integer"),
        ({"max_batch_size": True}, "max_batch_size should be an integer"),
        ({"max_batch_size": 0}, "max_batch_size should be from 1 to 65536, got 0"),
        ({"max_queue_delay_microseconds": -1}, "max_queue_delay_microseconds should be from 0"),
    ],
)
def test_config_json_errors(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_batching_entry(value, DEFAULT)
    assert message in raised.value.text


def test_config_file_entry_and_its_errors(tmp_path: Path) -> None:
    entries = [
        {"config": {"name": "a", "base_path": "a", "dynamic_batching": False}},
        {"config": {"name": "b", "base_path": "b", "dynamic_batching": {"max_batch_size": 0}}},
        {"config": {"name": "c", "base_path": "c"}},
    ]
    data = json.dumps({"model_config_list": entries}).encode()
    parsed = parse_config(data, tmp_path / "config.json")
    models = {model.name: model for model in parsed.models}
    assert models["a"].batching == BatchingConfig(enabled=False)
    assert models["c"].batching is None
    assert [error.name for error in parsed.errors] == ["b"]
    assert "model_config_list[1].config.dynamic_batching: max_batch_size" in parsed.errors[0].text


def test_a_wrong_json_type_rejects_the_file(tmp_path: Path) -> None:
    entries = [{"config": {"name": "a", "base_path": "a", "dynamic_batching": 3}}]
    with pytest.raises(ConfigError) as raised:
        parse_config(json.dumps({"model_config_list": entries}).encode(), tmp_path / "c.json")
    assert "true, false or an object" in raised.value.text


def args(tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "1").mkdir(exist_ok=True)
    return ["--model_name", "m", "--model_path", str(tmp_path), "--port", "9000", *extra]


def test_flags(tmp_path: Path) -> None:
    assert cli.parse_args(args(tmp_path)).batching == BatchingConfig()
    config = cli.parse_args(
        args(
            tmp_path,
            "--dynamic_batching",
            "on",
            "--max_batch_size",
            "16",
            "--max_queue_delay_microseconds",
            "500",
        )
    )
    assert config.batching == BatchingConfig(True, 16, 500)
    assert cli.parse_args(args(tmp_path, "--dynamic_batching", "off")).batching.enabled is False
    with pytest.raises(ConfigError) as raised:
        cli.parse_args(args(tmp_path, "--max_batch_size", "0"))
    assert raised.value.text == "max_batch_size should be from 1 to 65536, got 0"


def test_worker_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cli.parse_args(args(tmp_path)).workers == 1
    assert cli.parse_args(args(tmp_path, "--grpc_workers", "3")).workers == 3
    rest = ["--rest_port", "9001", "--rest_workers"]
    assert cli.parse_args(args(tmp_path, *rest, "2")).workers == 2
    assert cli.parse_args(args(tmp_path, *rest, "64")).workers == 4  # threads in OVMS: capped
    slot = cli.parse_args(args(tmp_path, "--worker_slot", "1/2:/tmp/w")).worker_slot
    assert slot == WorkerSlot(1, 2, Path("/tmp/w"))


@pytest.mark.parametrize("value", ["x", "2/2:/tmp", "1/2:", "a/b:/tmp"])
def test_bad_worker_slot(value: str) -> None:
    with pytest.raises(ConfigError):
        WorkerSlot.parse(value)


def test_worker_slot_paths() -> None:
    slot = WorkerSlot.parse("0/3:/run/w")
    assert slot.others() == [1, 2]
    assert slot.socket_path(2) == Path("/run/w/worker-2.sock")
    assert slot.ready_path(0) == Path("/run/w/worker-0.ready")
    assert WorkerSlot.parse(slot.flag()) == slot
