"""OVMS's ``config.json``, read strictly into typed model configs and the monitoring settings.

Two passes. The structure (valid JSON, known keys only, each value of the right JSON type) is
checked first: any problem there rejects the whole file, so a reload applies nothing. Then
each model's values (shape, batch size, layout, version policy, ...) are parsed: a bad value
fails only that model, which is reported in its status while the others serve. Every error
says where it is, e.g. ``model_config_list[1].config.shape: Couldn't parse shape parameter``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ovserve.config.batching import BatchingConfig, parse_batching_entry
from ovserve.config.layout import parse_layout_param
from ovserve.config.model_config import ModelConfig
from ovserve.config.model_name import check_model_name
from ovserve.config.model_path import ModelPath, parse_model_path
from ovserve.config.plugin_config import parse_plugin_config
from ovserve.config.preprocessing import (
    Preprocessing,
    parse_color_format,
    parse_float_value,
    parse_precision,
)
from ovserve.config.shape import parse_batch_size, parse_shape_object
from ovserve.config.variants import VariantConfig, parse_variant_config
from ovserve.config.version_policy import DEFAULT_POLICY, parse_version_policy
from ovserve.errors import ConfigError

log = logging.getLogger(__name__)

MAX_NIREQ: Final = 100_000

_TOP_LEVEL_LISTS: Final = (
    "model_config_list",
    "pipeline_config_list",
    "mediapipe_config_list",
    "custom_node_library_config_list",
    "custom_loader_config_list",
)
_TOP_LEVEL_KEYS: Final = (*_TOP_LEVEL_LISTS, "monitoring")

_STRING = "a string"
_BOOL = "true or false"
_UINT = "a non-negative integer"
_OBJECT = "an object"
_FLOATS = "a string, a number or a list of numbers"
_NUMBER = "a non-negative number"

_MODEL_KEYS: Final[dict[str, str]] = {
    "name": _STRING,
    "base_path": _STRING,
    "batch_size": "a string or an integer",
    "model_version_policy": _OBJECT,
    "shape": "a string, an object or a list of integers",
    "layout": "a string or an object of strings",
    "nireq": _UINT,
    "target_device": _STRING,
    "plugin_config": _OBJECT,
    "allow_cache": _BOOL,
    "stateful": _BOOL,
    "low_latency_transformation": _BOOL,
    "idle_sequence_cleanup": _BOOL,
    "max_sequence_number": _UINT,
    # Beyond OVMS's schema, which rejects these four (they work only on its command line):
    "mean": _FLOATS,
    "scale": _FLOATS,
    "color_format": _STRING,
    "precision": _STRING,
    "max_shape_variants": _UINT,
    "shape_variant_threshold": _UINT,
    "shape_variant_window_seconds": _NUMBER,
    "idle_memory_release_seconds": _NUMBER,
    "dynamic_batching": "true, false or an object",
}
"""Keys allowed in a model's ``config`` (OVMS's schema and four more), with each JSON type."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


_TYPE_CHECKS: Final[dict[str, Callable[[object], bool]]] = {
    _STRING: lambda value: isinstance(value, str),
    _BOOL: lambda value: isinstance(value, bool),
    _UINT: _is_uint,
    _OBJECT: lambda value: isinstance(value, dict),
    _NUMBER: lambda value: (
        isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    ),
    "a string or an integer": lambda value: isinstance(value, str) or _is_int(value),
    _FLOATS: lambda value: (
        isinstance(value, str)
        or _is_number(value)
        or (isinstance(value, list) and all(_is_number(item) for item in value))
    ),
    "true, false or an object": lambda value: isinstance(value, bool | dict),
    "a string, an object or a list of integers": lambda value: (
        isinstance(value, str | dict)
        or (isinstance(value, list) and all(_is_int(item) for item in value))
    ),
    "a string or an object of strings": lambda value: (
        isinstance(value, str)
        or (isinstance(value, dict) and all(isinstance(item, str) for item in value.values()))
    ),
}


class ConfigFileUnreadable(ConfigError):
    """The config file is missing or cannot be read (OVMS: ``Config file not found or cannot
    open.``)."""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``monitoring.metrics``: whether ``/metrics`` is served and which families."""

    enable: bool = False
    metrics_list: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelEntryError:
    """A model whose entry is invalid: it is not served and its status shows ``text``."""

    name: str
    text: str


@dataclass(frozen=True)
class ConfigFile:
    """One parsed version of the config file."""

    path: Path
    digest: str
    """Hash of the file's bytes: the poller reloads when it changes."""
    models: tuple[ModelConfig, ...] = ()
    errors: tuple[ModelEntryError, ...] = ()
    metrics: MetricsConfig | None = None
    """Present when the file has ``monitoring.metrics``."""


def file_digest(data: bytes) -> str:
    """The content hash the poller compares (MD5, as OVMS; not used for security)."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_file_bytes(path: Path) -> bytes:
    """The file's bytes, or ConfigFileUnreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigFileUnreadable(
            f"Config file not found or cannot open: {path}: {error.strerror or error}"
        ) from None


def read_config_file(path: Path, *, cache_dir: Path | None = None) -> ConfigFile:
    """Read and parse the config file; raise ConfigError (whole file rejected) with where."""
    return parse_config(read_file_bytes(path), path, cache_dir=cache_dir)


def parse_config(data: bytes, path: Path, *, cache_dir: Path | None = None) -> ConfigFile:
    """Parse config file bytes; ``base_path`` values are resolved against ``path``'s folder."""
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError as error:
        raise ConfigError(f"Config file {path} is not UTF-8 text: {error.reason}") from None
    except ValueError as error:
        raise ConfigError(f"Config file {path} is not valid JSON: {error}") from None
    entries = _check_structure(document)
    models, errors = _parse_models(entries, path.parent, cache_dir)
    return ConfigFile(
        path=path,
        digest=file_digest(data),
        models=tuple(models),
        errors=tuple(errors),
        metrics=_parse_metrics(document.get("monitoring")),
    )


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


# ---------------------------------------------------------------------------------------------
# pass 1: structure (any error rejects the whole file)
# ---------------------------------------------------------------------------------------------
def _check_structure(document: object) -> list[dict[str, Any]]:
    """Check keys and JSON types; return each model's ``config`` object."""
    if not isinstance(document, dict):
        raise ConfigError("config file: expected a JSON object with model_config_list")
    _check_keys(document, _TOP_LEVEL_KEYS, "config file")
    for key in _TOP_LEVEL_LISTS:
        if key in document and not isinstance(document[key], list):
            raise ConfigError(f"{key}: expected a list")
    for key in _TOP_LEVEL_LISTS[1:]:
        if document.get(key):
            raise ConfigError(
                f"{key}: not supported by ovserve (DAG pipelines, MediaPipe graphs, custom "
                "nodes and custom loaders); only model_config_list is served"
            )
    if "monitoring" in document:
        _check_monitoring(document["monitoring"])
    configs = []
    for index, item in enumerate(document.get("model_config_list", [])):
        where = f"model_config_list[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f'{where}: expected an object {{"config": {{...}}}}')
        _check_keys(item, ("config",), where)
        if "config" not in item:
            raise ConfigError(f"{where}: missing required key 'config'")
        configs.append(_check_model_structure(item["config"], f"{where}.config"))
    return configs


def _check_model_structure(config: object, where: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected an object")
    _check_keys(config, tuple(_MODEL_KEYS), where)
    for required in ("name", "base_path"):
        if required not in config:
            raise ConfigError(f"{where}: missing required key {required!r}")
    for key, value in config.items():
        expected = _MODEL_KEYS[key]
        if not _TYPE_CHECKS[expected](value):
            raise ConfigError(f"{where}.{key}: expected {expected}, got {json.dumps(value)}")
    if not config["base_path"].strip():
        raise ConfigError(f"{where}.base_path: must not be empty")
    return config


def _check_monitoring(value: object) -> None:
    if not isinstance(value, dict):
        raise ConfigError("monitoring: expected an object")
    _check_keys(value, ("metrics",), "monitoring")
    metrics = value.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ConfigError("monitoring.metrics: expected an object")
    _check_keys(metrics, ("enable", "metrics_list"), "monitoring.metrics")
    if not isinstance(metrics.get("enable", False), bool):
        raise ConfigError("monitoring.metrics.enable: expected true or false")
    names = metrics.get("metrics_list", [])
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ConfigError("monitoring.metrics.metrics_list: expected a list of strings")


def _check_keys(value: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _parse_metrics(value: object) -> MetricsConfig | None:
    if not isinstance(value, dict) or "metrics" not in value:
        return None
    metrics = value["metrics"]
    return MetricsConfig(
        enable=metrics.get("enable", False),
        metrics_list=tuple(metrics.get("metrics_list", [])),
    )


# ---------------------------------------------------------------------------------------------
# pass 2: each model's values (an error fails only that model)
# ---------------------------------------------------------------------------------------------
def _parse_models(
    entries: list[dict[str, Any]], folder: Path, cache_dir: Path | None
) -> tuple[list[ModelConfig], list[ModelEntryError]]:
    indexes: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        indexes.setdefault(entry["name"], []).append(index)
    models: list[ModelConfig] = []
    errors: list[ModelEntryError] = []
    for name, found in indexes.items():
        if len(found) > 1:
            places = ", ".join(f"model_config_list[{index}]" for index in found)
            errors.append(
                ModelEntryError(name, f"Duplicated model name {name} in config file: {places}")
            )
            continue
        where = f"model_config_list[{found[0]}].config"
        try:
            _check_name(name, where)
            models.append(_parse_model(entries[found[0]], where, folder, cache_dir))
        except ConfigError as error:
            errors.append(ModelEntryError(name, error.text))
    return models, errors


def _check_name(name: str, where: str) -> None:
    """An unsafe name fails this model only (the others keep serving)."""
    try:
        check_model_name(name)
    except ConfigError as error:
        raise ConfigError(f"{where}.name: {error.text}") from None


def _parse_model(
    entry: dict[str, Any], where: str, folder: Path, cache_dir: Path | None
) -> ModelConfig:
    name: str = entry["name"]

    def field(key: str, parse: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in entry:
            return default
        try:
            return parse(entry[key])
        except ConfigError as error:
            raise ConfigError(f"{where}.{key}: {error.text}") from None

    shape = field("shape", parse_shape_object, {})
    batch_size = field("batch_size", parse_batch_size)
    if shape and batch_size is not None:
        log.warning(
            "Model %s: Both shape and batch size have been defined. "
            "Batch size parameter will be ignored.",
            name,
        )
        batch_size = None
    nireq = entry.get("nireq", 0)
    if nireq > MAX_NIREQ:
        raise ConfigError(f"{where}.nireq: should be from 0 to {MAX_NIREQ}, got {nireq}")
    if entry.get("stateful", False):
        raise ConfigError(f"{where}.stateful: stateful models are not supported by ovserve")
    return ModelConfig(
        name=name,
        base_path=field("base_path", lambda value: _resolve_base_path(value, folder)),
        shape=shape,
        batch_size=batch_size,
        layout=field("layout", parse_layout_param, {}),
        version_policy=field("model_version_policy", parse_version_policy, DEFAULT_POLICY),
        nireq=nireq,
        target_device=entry.get("target_device", "CPU"),
        plugin_config=field("plugin_config", parse_plugin_config, {}),
        cache_dir=cache_dir,
        allow_cache=entry.get("allow_cache", False),
        preprocessing=Preprocessing(
            mean=field("mean", lambda value: parse_float_value(_float_text(value), "mean")),
            scale=field("scale", lambda value: parse_float_value(_float_text(value), "scale")),
            color_format=field("color_format", parse_color_format),
            precision=field("precision", parse_precision),
        ),
        variants=_parse_variants(entry, where),
        batching=field(
            "dynamic_batching", lambda value: parse_batching_entry(value, BatchingConfig())
        ),
    )


def _parse_variants(entry: dict[str, Any], where: str) -> VariantConfig:
    try:
        return parse_variant_config(entry)
    except ConfigError as error:
        raise ConfigError(f"{where}.{error.text}") from None


def _float_text(value: str | float | list[float]) -> str:
    """mean/scale as OVMS's string syntax (config.json may also give a number or a list)."""
    return value if isinstance(value, str) else json.dumps(value)


def _resolve_base_path(value: str, folder: Path) -> ModelPath:
    """A URL, or a local path; a relative one is taken from the config file's folder, as OVMS."""
    return parse_model_path(value, relative_to=folder)
