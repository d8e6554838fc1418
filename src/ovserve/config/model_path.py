"""Where a model's versions live: a local folder (or file) or an object-storage URL.

``--model_path`` and config.json ``base_path`` accept OVMS's schemes: ``s3://bucket/path``
(also ``s3://host:port/bucket/path`` for an S3-compatible server), ``gs://bucket/path``,
``az://container/path`` (Azure Blob) and ``azfs://share/path`` (Azure Files). The string is
parsed here, once; past this edge a model path is either a :class:`~pathlib.Path` or a
:class:`RemotePath`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ovserve.errors import ConfigError

SCHEMES: Final = ("s3", "gs", "az", "azfs")


@dataclass(frozen=True, slots=True)
class RemotePath:
    """A model folder in object storage: scheme, bucket (container, share) and key prefix."""

    scheme: str
    bucket: str
    prefix: str
    """Key prefix without leading or trailing ``/`` ("" for the bucket's root)."""
    endpoint: str = ""
    """``host:port`` given in an ``s3://host:port/bucket/...`` URL, else ""."""

    def __str__(self) -> str:
        host = f"{self.endpoint}/" if self.endpoint else ""
        tail = f"/{self.prefix}" if self.prefix else ""
        return f"{self.scheme}://{host}{self.bucket}{tail}"


ModelPath = Path | RemotePath
"""A parsed ``--model_path`` / ``base_path``."""


def is_remote(value: str) -> bool:
    """Whether the string names an object-storage location (has a ``scheme://``)."""
    return "://" in value


def parse_remote_path(value: str) -> RemotePath:
    """Parse ``scheme://bucket/prefix``; raise ConfigError for unknown schemes or bad paths."""
    scheme, _, rest = value.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise ConfigError(f"{value}: unsupported model path scheme {scheme}:// (use {known})")
    parts = [part for part in rest.split("/") if part]
    endpoint = ""
    if scheme == "s3" and parts and ":" in parts[0]:
        endpoint, parts = parts[0], parts[1:]  # bucket names never hold ':' (OVMS's form)
    if not parts:
        raise ConfigError(f"{value}: missing the bucket name in the model path")
    if any(part in (".", "..") for part in parts):
        raise ConfigError(f"{value}: '.' and '..' are not allowed in a model path")
    return RemotePath(scheme, parts[0], "/".join(parts[1:]), endpoint)


def parse_model_path(value: str, relative_to: Path | None = None) -> ModelPath:
    """A local path (expanded, absolute; relative ones taken from ``relative_to`` or the
    working folder) or a :class:`RemotePath`."""
    if is_remote(value):
        return parse_remote_path(value)
    path = Path(value).expanduser()
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    return path.resolve()
