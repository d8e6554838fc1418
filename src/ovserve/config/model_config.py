"""One served model's configuration, as given by CLI flags or a config.json entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ovserve.config.batching import BatchingConfig
from ovserve.config.layout import Layout
from ovserve.config.mapping import TensorMapping
from ovserve.config.model_path import ModelPath
from ovserve.config.plugin_config import PluginValue
from ovserve.config.preprocessing import NO_PREPROCESSING, Preprocessing
from ovserve.config.shape import BatchSize, ShapeValue
from ovserve.config.variants import VariantConfig
from ovserve.config.version_policy import DEFAULT_POLICY, VersionPolicy

__all__ = ["ModelConfig", "PluginValue"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to load and serve one model name."""

    name: str
    base_path: ModelPath
    """A local folder (or model file), or a :class:`RemotePath` in object storage."""
    shape: Mapping[str, ShapeValue] = field(default_factory=dict)
    batch_size: BatchSize | None = None
    layout: Mapping[str, Layout] = field(default_factory=dict)
    version_policy: VersionPolicy = DEFAULT_POLICY
    nireq: int = 0
    target_device: str = "CPU"
    plugin_config: Mapping[str, PluginValue] = field(default_factory=dict)
    cache_dir: Path | None = None
    allow_cache: bool = False
    """Use the cache even for ``auto`` shapes (off by default for them, as in OVMS)."""
    mapping: TensorMapping = field(default_factory=TensorMapping)
    """Aliases from the version folder's ``mapping_config.json`` (set when a version loads)."""
    preprocessing: Preprocessing = NO_PREPROCESSING
    """``mean``, ``scale``, ``color_format``, ``precision``: conversions of the client's input."""
    variants: VariantConfig = field(default_factory=VariantConfig)
    """Static variants for repeated shapes and idle memory release (dynamic models only)."""
    batching: BatchingConfig | None = None
    """Dynamic batching for this model (None: the server-wide default, see config/batching.py)."""
