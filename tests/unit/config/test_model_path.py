"""Parsing --model_path / base_path into a local Path or a RemotePath."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovserve.config.model_path import RemotePath, parse_model_path
from ovserve.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s3://bucket/models/face", RemotePath("s3", "bucket", "models/face")),
        ("s3://bucket", RemotePath("s3", "bucket", "")),
        ("s3://bucket/m/", RemotePath("s3", "bucket", "m")),
        ("S3://bucket//m", RemotePath("s3", "bucket", "m")),
        ("s3://minio:9000/bucket/m", RemotePath("s3", "bucket", "m", "minio:9000")),
        ("gs://bucket/m", RemotePath("gs", "bucket", "m")),
        ("az://container/a/b", RemotePath("az", "container", "a/b")),
        ("azfs://share/m", RemotePath("azfs", "share", "m")),
    ],
)
def test_remote_paths(value: str, expected: RemotePath) -> None:
    assert parse_model_path(value) == expected


def test_remote_path_text_round_trips() -> None:
    for text in ("s3://bucket/models/face", "s3://minio:9000/b/m", "gs://b", "az://c/x/y"):
        assert str(parse_model_path(text)) == text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hdfs://x/m", "unsupported model path scheme hdfs://"),
        ("s3://", "missing the bucket name"),
        ("s3://host:9000/", "missing the bucket name"),
        ("s3://bucket/../m", "'.' and '..' are not allowed"),
    ],
)
def test_bad_remote_paths(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_path(value)


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_model_path("models/m") == tmp_path / "models" / "m"
    assert parse_model_path("m", relative_to=tmp_path / "cfg") == tmp_path / "cfg" / "m"
    assert parse_model_path(str(tmp_path / "abs"), relative_to=Path("/x")) == tmp_path / "abs"
