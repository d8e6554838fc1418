"""``mapping_config.json``: client-facing aliases for a version's input and output names.

The file sits in a version folder: ``{"inputs": {"real": "alias"}, "outputs": {"real": "alias"}}``.
Clients see and send the aliases; the engine maps them back to the model's tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ovserve.errors import ConfigError

MAPPING_FILE: Final = "mapping_config.json"


@dataclass(frozen=True)
class TensorMapping:
    """Real tensor name to alias, for inputs and for outputs."""

    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)

    def input_alias(self, names: set[str]) -> str | None:
        """The alias of an input known by any of ``names``, if one is mapped."""
        return _alias(self.inputs, names)

    def output_alias(self, names: set[str]) -> str | None:
        """The alias of an output known by any of ``names``, if one is mapped."""
        return _alias(self.outputs, names)

    def real_input(self, name: str) -> str:
        """The real input name behind an alias (other names pass through)."""
        for real, alias in self.inputs.items():
            if alias == name:
                return real
        return name


def _alias(table: Mapping[str, str], names: set[str]) -> str | None:
    for real, alias in table.items():
        if real in names:
            return alias
    return None


def parse_mapping(value: object, where: str = MAPPING_FILE) -> TensorMapping:
    """Validate a decoded ``mapping_config.json``; raise ConfigError saying what is wrong."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object with inputs and outputs")
    unknown = sorted(set(value) - {"inputs", "outputs"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: inputs, outputs)")
    tables: dict[str, dict[str, str]] = {}
    for key in ("inputs", "outputs"):
        table = value.get(key, {})
        if not isinstance(table, dict) or not all(
            isinstance(alias, str) and alias for alias in table.values()
        ):
            raise ConfigError(f"{where}: {key} must map real names to non-empty alias strings")
        aliases = list(table.values())
        duplicated = sorted({alias for alias in aliases if aliases.count(alias) > 1})
        if duplicated:
            raise ConfigError(f"{where}: {key} alias {duplicated[0]!r} is used twice")
        tables[key] = {str(real): alias for real, alias in table.items()}
    return TensorMapping(tables["inputs"], tables["outputs"])


def read_mapping(folder: Path) -> TensorMapping:
    """The mapping in a version folder, or an empty one when the folder has none."""
    path = folder / MAPPING_FILE
    if not path.is_file():
        return TensorMapping()
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        # Replies say which file by name only; the log has the path.
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise ConfigError(
            f"{MAPPING_FILE}: cannot read a JSON object: {reason}",
            log_text=f"{path}: cannot read a JSON object: {error}",
        ) from None
    return parse_mapping(value)
