"""Scanning ``<base_path>/<N>/`` version folders for model files."""

from __future__ import annotations

import logging
from pathlib import Path

from ovserve.errors import ConfigError

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".xml", ".onnx")
MAX_VERSION = 2**63 - 1
"""TF Serving and KServe carry versions as int64."""


def list_versions(base_path: Path) -> dict[int, Path]:
    """Numbered version folders under ``base_path`` (N > 0); other entries are logged and skipped.

    Raises ConfigError when the path is missing or is not a folder.
    """
    if not base_path.exists():
        raise ConfigError(f"Model path {base_path} does not exist")
    if not base_path.is_dir():
        raise ConfigError(f"Model path {base_path} is not a directory")
    versions: dict[int, Path] = {}
    for entry in sorted(base_path.iterdir()):
        if not entry.is_dir():
            continue
        version = _version_number(entry.name)
        if version is not None:
            versions[version] = entry
        else:
            log.debug(
                "Skipping %s: expected version directory name to be a number greater than 0",
                entry,
            )
    return versions


def _version_number(name: str) -> int | None:
    """The version a folder name stands for: ASCII digits, 1 to the int64 maximum (the wire's)."""
    if not (name.isascii() and name.isdigit()):
        return None
    version = int(name)
    return version if 0 < version <= MAX_VERSION else None


def find_model_file(folder: Path) -> Path:
    """The one model file (``.xml`` with its ``.bin``, or ``.onnx``) in a version folder."""
    candidates = sorted(
        path for path in folder.iterdir() if path.is_file() and path.suffix in MODEL_SUFFIXES
    )
    if not candidates:
        raise ConfigError(
            f"No model file in {folder}: expected an OpenVINO IR (.xml and .bin) or an .onnx file"
        )
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        raise ConfigError(f"More than one model file in {folder} ({names}): keep exactly one")
    model_file = candidates[0]
    if model_file.suffix == ".xml" and not model_file.with_suffix(".bin").is_file():
        raise ConfigError(f"Model file {model_file} has no weights file {model_file.stem}.bin")
    return model_file
