"""Version folders and model files on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovserve.errors import ConfigError
from ovserve.repository.versions import find_model_file, folder_stamp, list_versions


def folder(base: Path, name: str, *files: str) -> Path:
    path = base / name
    path.mkdir(parents=True)
    for file in files:
        (path / file).write_bytes(b"")
    return path


def test_numbered_folders_only(tmp_path: Path) -> None:
    one = folder(tmp_path, "1")
    ten = folder(tmp_path, "10")
    folder(tmp_path, "0")
    folder(tmp_path, "-1")
    folder(tmp_path, "v2")
    folder(tmp_path, "2.0")
    (tmp_path / "3").write_text("a file")
    assert list_versions(tmp_path) == {1: one, 10: ten}


def test_empty_repository(tmp_path: Path) -> None:
    assert list_versions(tmp_path) == {}


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        list_versions(tmp_path / "nope")
    assert caught.value.text == "Model path does not exist"  # replies never name paths
    assert caught.value.log_text == f"Model path {tmp_path / 'nope'} does not exist"


def test_path_is_a_file_that_is_no_model(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is neither a directory nor a model file"):
        list_versions(tmp_path / "f")


@pytest.mark.parametrize("name", ["model.onnx", "model.xml"])
def test_a_model_file_is_version_1(tmp_path: Path, name: str) -> None:
    """KServe's flat layout: --model_path pointing at one model file (as OVMS 2026.3)."""
    (tmp_path / name).write_bytes(b"")
    (tmp_path / "model.bin").write_bytes(b"")
    assert list_versions(tmp_path / name) == {1: tmp_path / name}
    assert find_model_file(tmp_path / name) == tmp_path / name


def test_model_files_directly_in_the_base_path_are_version_1(tmp_path: Path) -> None:
    """KServe's storage initializer copies a model's files flat into /mnt/models."""
    for name in ("model.xml", "model.bin", "mapping_config.json"):
        (tmp_path / name).write_bytes(b"")
    folder(tmp_path, "extra")
    assert list_versions(tmp_path) == {1: tmp_path}
    assert find_model_file(tmp_path) == tmp_path / "model.xml"


def test_version_folders_win_over_stray_model_files(tmp_path: Path) -> None:
    (tmp_path / "old.onnx").write_bytes(b"")
    two = folder(tmp_path, "2", "model.onnx")
    assert list_versions(tmp_path) == {2: two}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["model.xml", "model.bin"], "model.xml"),
        (["model.onnx"], "model.onnx"),
        (["model.onnx", "notes.txt", "mapping_config.json"], "model.onnx"),
    ],
)
def test_one_model_file(tmp_path: Path, files: list[str], expected: str) -> None:
    assert find_model_file(folder(tmp_path, "1", *files)).name == expected


def test_no_model_file(tmp_path: Path) -> None:
    path = folder(tmp_path, "1", "readme.txt")
    with pytest.raises(ConfigError) as caught:
        find_model_file(path)
    expected = "expected an OpenVINO IR (.xml and .bin) or an .onnx file"
    assert caught.value.text == f"No model file in version folder 1: {expected}"
    assert caught.value.log_text == f"No model file in {path}: {expected}"


@pytest.mark.parametrize("files", [["a.xml", "a.bin", "b.onnx"], ["a.onnx", "b.onnx"]])
def test_two_model_files(tmp_path: Path, files: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"More than one model file in .* keep exactly one"):
        find_model_file(folder(tmp_path, "1", *files))


def test_ir_without_weights(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has no weights file model\.bin"):
        find_model_file(folder(tmp_path, "1", "model.xml"))


def test_a_folder_named_like_a_model_is_not_a_model(tmp_path: Path) -> None:
    path = folder(tmp_path, "1", "model.onnx")
    (path / "extra.xml").mkdir()
    assert find_model_file(path).name == "model.onnx"


@pytest.mark.parametrize("name", ["\u00b2", "\u0663", "1\u00b2"])
def test_non_ascii_digits_are_not_versions(tmp_path: Path, name: str) -> None:
    folder(tmp_path, name)
    one = folder(tmp_path, "1")
    assert list_versions(tmp_path) == {1: one}


def test_versions_beyond_int64_are_not_versions(tmp_path: Path) -> None:
    # TF Serving and KServe carry versions as int64; a larger one could never be answered.
    folder(tmp_path, str(2**63))
    top = folder(tmp_path, str(2**63 - 1))
    assert list_versions(tmp_path) == {2**63 - 1: top}


def test_folder_stamp_changes_with_the_content(tmp_path: Path) -> None:
    path = folder(tmp_path, "1", "model.onnx")
    before = folder_stamp(path)
    assert folder_stamp(path) == before
    (path / "model.onnx").write_bytes(b"a longer model than before")
    assert folder_stamp(path) != before
    assert folder_stamp(tmp_path / "gone") == ()
