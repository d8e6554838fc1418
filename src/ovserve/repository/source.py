"""Version sources: where a model's version folders are listed and made available locally.

A local base path is read in place. A remote one (``s3://``, ``gs://``, ``az://``, ``azfs://``)
is listed in object storage and each version is downloaded to a private temporary folder
before it loads, then deleted when the version is retired (see :mod:`.remote`). The model
manager sees one small interface for both; every method blocks, so it calls them in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ovserve.config.model_path import ModelPath, RemotePath
from ovserve.repository.versions import list_versions

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scan:
    """One listing: version → local folder (or model file), and folders that are not versions."""

    versions: dict[int, Path]
    skipped: tuple[str, ...] = ()


class VersionSource(Protocol):
    """Lists a model's versions and provides each one's files on the local disk."""

    def scan(self) -> Scan:
        """List the versions now present; raise ConfigError when the base path is unusable."""

    def fetch(self, version: int, location: Path) -> Path:
        """Make ``location`` (from :meth:`scan`) hold the version's files; return it."""

    def release(self, version: int) -> None:
        """The version is retired: drop its local copy, if any."""

    def close(self) -> None:
        """Drop every local copy."""


class LocalSource:
    """A base path on the local disk: read in place, nothing to download or delete."""

    def __init__(self, base_path: Path, model_name: str) -> None:
        self._base_path = base_path
        self._model_name = model_name
        self._flat = False

    def scan(self) -> Scan:
        """The numbered version folders (or the flat layout's version 1)."""
        versions = list_versions(self._base_path)
        flat = versions == {1: self._base_path}
        if flat and not self._flat:
            what = "is a model file" if self._base_path.is_file() else "holds the model files"
            log.info(
                "Model %s: %s %s directly (no version folder): serving it as version 1",
                self._model_name,
                self._base_path,
                what,
            )
        self._flat = flat
        if flat:
            return Scan(versions)
        used = set(versions.values())
        skipped = tuple(
            sorted(
                entry.name
                for entry in self._base_path.iterdir()
                if entry.is_dir() and entry not in used and not entry.name.startswith(".")
            )
        )  # hidden folders are left out: tools stage new versions in them before renaming
        return Scan(versions, skipped)

    def fetch(self, version: int, location: Path) -> Path:
        """Local files are used where they are."""
        return location

    def release(self, version: int) -> None:
        """Nothing to delete: the files are the user's."""

    def close(self) -> None:
        """Nothing to delete: the files are the user's."""


def open_source(base_path: ModelPath, model_name: str) -> VersionSource:
    """The source for a model's base path (remote client libraries load only when needed)."""
    if isinstance(base_path, RemotePath):
        from ovserve.repository.remote import RemoteSource

        return RemoteSource(base_path, model_name)
    return LocalSource(base_path, model_name)
