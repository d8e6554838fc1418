"""Scanning ``<base_path>/<N>/`` version folders for model files.

KServe's flat layout is served too: a base path that holds the model files directly (no
numbered folder), or that is a single model file, is version 1 (OVMS 2026.3 does the latter).
"""

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

    A folder with model files and no version folder, or a model file, is ``{1: base_path}``
    (the flat layout). Raises ConfigError when the path is missing or is neither.
    """
    # Error texts reach clients without the path (status replies); the log has it.
    if not base_path.exists():
        raise ConfigError(
            "Model path does not exist", log_text=f"Model path {base_path} does not exist"
        )
    if base_path.is_file():
        if base_path.suffix in MODEL_SUFFIXES:
            return {1: base_path}
        neither = "is neither a directory nor a model file (.xml or .onnx)"
        raise ConfigError(f"Model path {neither}", log_text=f"Model path {base_path} {neither}")
    if not base_path.is_dir():
        raise ConfigError(
            "Model path is not a directory", log_text=f"Model path {base_path} is not a directory"
        )
    versions: dict[int, Path] = {}
    for entry in sorted(base_path.iterdir()):
        if not entry.is_dir():
            continue
        version = version_number(entry.name)
        if version is not None:
            versions[version] = entry
        else:
            log.debug(
                "Skipping %s: expected version directory name to be a number greater than 0",
                entry,
            )
    if not versions and any(
        path.is_file() and path.suffix in MODEL_SUFFIXES for path in base_path.iterdir()
    ):
        return {1: base_path}
    return versions


def version_number(name: str) -> int | None:
    """The version a folder name stands for: ASCII digits, 1 to the int64 maximum (the wire's)."""
    if not (name.isascii() and name.isdigit()):
        return None
    version = int(name)
    return version if 0 < version <= MAX_VERSION else None


def find_model_file(folder: Path) -> Path:
    """The one model file (``.xml`` with its ``.bin``, or ``.onnx``) in a version folder, or
    ``folder`` itself when it is a model file (flat layout)."""
    candidates = (
        [folder]
        if folder.is_file()
        else sorted(
            path for path in folder.iterdir() if path.is_file() and path.suffix in MODEL_SUFFIXES
        )
    )
    where = f"version folder {folder.name}"
    if not candidates:
        expected = "expected an OpenVINO IR (.xml and .bin) or an .onnx file"
        raise ConfigError(
            f"No model file in {where}: {expected}",
            log_text=f"No model file in {folder}: {expected}",
        )
    if len(candidates) > 1:
        names = ", ".join(path.name for path in candidates)
        raise ConfigError(
            f"More than one model file in {where} ({names}): keep exactly one",
            log_text=f"More than one model file in {folder} ({names}): keep exactly one",
        )
    model_file = candidates[0]
    if model_file.suffix == ".xml" and not model_file.with_suffix(".bin").is_file():
        weights = f"has no weights file {model_file.stem}.bin"
        raise ConfigError(
            f"Model file {model_file.name} {weights}", log_text=f"Model file {model_file} {weights}"
        )
    return model_file


FolderStamp = tuple[tuple[str, int, int], ...]
"""Each file in a version folder with its size and modification time: changes when the
folder's content does (a failed version is tried again then)."""


def folder_stamp(folder: Path) -> FolderStamp:
    """The folder's files (recursively) as (relative path, size, mtime in ns), sorted; a
    model file given directly (the flat layout) stamps itself."""
    entries = []
    try:
        if folder.is_file():
            info = folder.stat()
            return ((folder.name, info.st_size, info.st_mtime_ns),)
        for path in folder.rglob("*"):
            info = path.stat()
            if path.is_file():
                entries.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    except OSError:  # vanished or unreadable mid-scan: the next scan sees the settled state
        return ()
    return tuple(sorted(entries))


def folder_stamps(folders: dict[int, Path]) -> dict[int, FolderStamp]:
    """:func:`folder_stamp` of each version folder."""
    return {version: folder_stamp(folder) for version, folder in folders.items()}
