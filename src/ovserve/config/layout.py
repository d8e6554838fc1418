"""The ``--layout`` value: ``tgt:src`` (the client sends ``tgt``, the model has ``src``) or a tag.

``NHWC:NCHW`` makes the server accept NHWC and transpose inside the OpenVINO graph; a bare
``NCHW`` only tags the model's layout. A JSON object gives one layout per input or output name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ovserve.config.shape import ANONYMOUS_INPUT
from ovserve.errors import ConfigError

_LAYOUT = re.compile(r"^(?:[NCHWD?]|\.\.\.)+$")


@dataclass(frozen=True, slots=True)
class Layout:
    """``target`` is what clients send; ``source`` the model's own layout (None: same)."""

    target: str
    source: str | None = None

    @property
    def needs_transpose(self) -> bool:
        """True when the server must permute the client's layout into the model's."""
        return self.source is not None and self.source != self.target

    def permutation(self) -> list[int]:
        """Axes that turn the target layout into the source layout (``NHWC→NCHW`` = 0,3,1,2)."""
        if self.source is None:
            return list(range(len(self.target)))
        return [self.target.index(axis) for axis in self.source]

    def __str__(self) -> str:
        return self.target if self.source is None else f"{self.target}:{self.source}"


def parse_layout(text: str) -> Layout:
    """Parse ``NHWC:NCHW`` or ``NCHW``; raise ConfigError otherwise."""
    parts = text.strip().upper().split(":")
    if len(parts) > 2 or not all(_LAYOUT.match(part) for part in parts):
        raise ConfigError(f"Couldn't parse layout parameter: {text!r}")
    if len(parts) == 2:
        target, source = parts
        if "..." not in target + source and sorted(target) != sorted(source):
            raise ConfigError(
                f"Couldn't parse layout parameter: {text!r} (both sides need the same axes)"
            )
        return Layout(target, source)
    return Layout(parts[0])


def parse_layout_param(value: object) -> dict[str, Layout]:
    """A ``--layout`` / config.json ``layout``: one layout, or a JSON object of name to layout."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"Couldn't parse layout parameter: {value!r}") from None
    if isinstance(value, str):
        return {ANONYMOUS_INPUT: parse_layout(value)}
    if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
        return {str(name): parse_layout(item) for name, item in value.items()}
    raise ConfigError(f"Couldn't parse layout parameter: {value!r}")
