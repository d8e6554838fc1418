"""Versions kept in object storage, downloaded to a private temporary folder to load.

As OVMS: each poll lists ``<prefix>/<N>/`` "folders" in the bucket; a version is downloaded to
``<tmp>/<N>/`` (a folder only this user can read) just before it loads, and deleted when it
is retired or fails to load. A version whose files are already local is not downloaded again
(a config change recompiles from the same copy). Downloads go to ``<tmp>/.<N>.partial`` and
are renamed when complete, so a cut download is never loaded. Listing and downloading are
bounded in time: every request has connect/read time-outs and a whole version has
:data:`DOWNLOAD_TIMEOUT_SECONDS`.

KServe's flat layout works here too: model files directly under the prefix are version 1.

Object stores have no atomic rename, so a version being uploaded is seen file by file: a
version is listed only once its model file is complete (an ``.onnx``, or an ``.xml`` with its
``.bin``), so a poll between two uploads does not load (and fail) half a version.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from ovserve.config.model_path import RemotePath
from ovserve.errors import ConfigError
from ovserve.repository.object_stores import ObjectStore, open_store
from ovserve.repository.source import Scan
from ovserve.repository.versions import version_number

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_SECONDS = 600.0
"""Longest time one version's download may take before it fails (each request is bounded
by the store's own connect/read time-outs too)."""


class RemoteSource:
    """A model's versions in a bucket; local copies live under one private temporary folder."""

    def __init__(self, path: RemotePath, model_name: str, store: ObjectStore | None = None) -> None:
        self._path = path
        self._model_name = model_name
        self._store = store
        """Opened on the first scan (so a missing library or bad credentials is a scan error)."""
        self._root: Path | None = None
        self._keys: dict[int, list[str]] = {}
        """Object keys of each listed version (relative to the version's folder)."""
        self._flat = False

    @property
    def _prefix(self) -> str:
        return f"{self._path.prefix}/" if self._path.prefix else ""

    def _local_root(self) -> Path:
        if self._root is None:
            name = "".join(char if char.isalnum() else "_" for char in self._model_name)[:40]
            self._root = Path(tempfile.mkdtemp(prefix=f"ovserve-{name}-"))  # mode 0700
        return self._root

    def scan(self) -> Scan:
        """List ``<prefix>/<N>/...`` objects; raise ConfigError when the bucket cannot be read."""
        if self._store is None:
            self._store = open_store(self._path, dict(os.environ))
        keys = self._store.list_keys(self._prefix)
        by_version: dict[int, list[str]] = {}
        flat: list[str] = []
        skipped: set[str] = set()
        for key in keys:
            relative = key[len(self._prefix) :]
            head, slash, tail = relative.partition("/")
            if not slash:
                flat.append(relative)
                continue
            version = version_number(head)
            if version is None:
                if not head.startswith("."):
                    skipped.add(head)
            elif tail:
                by_version.setdefault(version, []).append(tail)
        by_version = {v: files for v, files in by_version.items() if _has_model(files)}
        is_flat = not by_version and _has_model(flat)
        if is_flat:
            by_version = {1: flat}
            if not self._flat:
                log.info(
                    "Model %s: %s holds the model files directly (no version folder): "
                    "serving them as version 1",
                    self._model_name,
                    self._path,
                )
        self._flat = is_flat
        self._keys = by_version
        root = self._local_root()
        return Scan(
            {version: root / str(version) for version in by_version},
            () if is_flat else tuple(sorted(skipped)),
        )

    def fetch(self, version: int, location: Path) -> Path:
        """Download the version into ``location`` unless it is already there."""
        if location.is_dir():
            return location
        if self._store is None or version not in self._keys:
            raise ConfigError(f"Model path {self._path}: version {version} is not listed")
        remote = self._prefix if self._flat else f"{self._prefix}{version}/"
        partial = location.with_name(f".{version}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        size = 0
        log.info("Model %s: downloading version %d from %s", self._model_name, version, self._path)
        try:
            for relative in self._keys[version]:
                if time.monotonic() - started > DOWNLOAD_TIMEOUT_SECONDS:
                    raise ConfigError(
                        f"Model path {self._path}: downloading version {version} took longer "
                        f"than {DOWNLOAD_TIMEOUT_SECONDS:.0f} s"
                    )
                target = _safe_join(partial, relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._store.download(remote + relative, target)
                size += target.stat().st_size
            partial.rename(location)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        log.info(
            "Model %s: version %d downloaded to %s (%d files, %.1f MB, %.1f s)",
            self._model_name,
            version,
            location,
            len(self._keys[version]),
            size / 1e6,
            time.monotonic() - started,
        )
        return location

    def release(self, version: int) -> None:
        """Delete the version's local copy."""
        if self._root is not None:
            shutil.rmtree(self._root / str(version), ignore_errors=True)

    def close(self) -> None:
        """Delete every local copy and the temporary folder."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


def _has_model(files: list[str]) -> bool:
    """Whether the files hold a whole model: an ``.onnx``, or an ``.xml`` with its ``.bin``."""
    names = set(files)
    return any(
        name.endswith(".onnx") or (name.endswith(".xml") and f"{name[:-4]}.bin" in names)
        for name in names
    )


def _safe_join(folder: Path, relative: str) -> Path:
    """``folder/relative`` for an object key, refusing keys that would leave ``folder``."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ConfigError(f"Object key {relative!r} cannot be stored as a local file")
    return folder.joinpath(*parts)
