"""Model names: what a name may contain, checked where names enter (flags and config.json).

A model name travels into URLs, gRPC requests, metric labels and log lines, and OVMS-style
tools build paths from it. So it must be non-empty and free of path separators (``/``,
``\\``), of ``..`` and of control characters: ``../evil`` or ``a/b`` would otherwise load and
be reachable over gRPC.
"""

from __future__ import annotations

import json

from ovserve.errors import ConfigError

RULE = "a model name must be non-empty and contain no '/', '\\', '..' or control characters"


def check_model_name(name: str) -> None:
    """ConfigError unless ``name`` follows :data:`RULE`."""
    if name.strip() and not _unsafe(name):
        return
    # json.dumps shows control characters escaped: the log stays one honest line.
    raise ConfigError(f"Invalid model name {json.dumps(name)}: {RULE}")


def _unsafe(name: str) -> bool:
    return (
        "/" in name
        or "\\" in name
        or ".." in name
        or any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in name)
    )
