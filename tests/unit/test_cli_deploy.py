"""Flags as KServe passes them: the runtime's args, then the InferenceService's appended."""

from __future__ import annotations

from pathlib import Path

from ovserve.cli import parse_args
from ovserve.config.model_path import RemotePath

RUNTIME_ARGS = [
    "--model_name=face",
    "--model_path=/mnt/models",
    "--port=9000",
    "--rest_port=8080",
    "--file_system_poll_wait_seconds=0",
    "--metrics_enable",
]


def test_appended_flags_win() -> None:
    config = parse_args(
        [
            *RUNTIME_ARGS,
            "--port=9001",
            "--rest_port",
            "8081",
            "--file_system_poll_wait_seconds=5",
            "--model_path=s3://bucket/face",
            "--nireq=2",
            "--nireq=4",
            "--metrics_enable",
            "--metrics_list=ovms_requests_streams_ratio",
        ]
    )
    assert (config.port, config.rest_port) == (9001, 8081)
    assert config.file_system_poll_wait_seconds == 5
    assert config.metrics_enable
    assert config.metrics_list == ("ovms_requests_streams_ratio",)
    (model,) = config.models
    assert model.base_path == RemotePath("s3", "bucket", "face")
    assert model.nireq == 4


def test_runtime_args_alone() -> None:
    config = parse_args(RUNTIME_ARGS)
    assert (config.port, config.rest_port, config.file_system_poll_wait_seconds) == (9000, 8080, 0)
    assert config.models[0].base_path == Path("/mnt/models")
    assert config.models[0].name == "face"
