"""``--plugin_config`` / config.json ``plugin_config``: OpenVINO properties for one model."""

from __future__ import annotations

import json

from ovserve.errors import ConfigError

PluginValue = str | int | float | bool


def parse_plugin_config(value: object) -> dict[str, PluginValue]:
    """``--plugin_config`` JSON (or a config.json object) into a flat property map."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"plugin_config is not valid JSON: {value!r}") from None
    if not isinstance(value, dict) or not all(
        isinstance(item, str | int | float | bool) for item in value.values()
    ):
        raise ConfigError(f"plugin_config must be a JSON object of scalar values: {value!r}")
    return {str(key): item for key, item in value.items()}
