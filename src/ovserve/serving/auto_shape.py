"""``--shape auto`` / ``--batch_size auto``: which inputs follow the request's shape.

A request whose shape does not fit an ``auto`` input makes the version recompile for that
shape (OVMS's deprecated behaviour; ``-1`` and ranges compile one dynamic model instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import ANONYMOUS_INPUT, AUTO, Dimension, Shape
from ovserve.serving.validation import batch_index
from ovserve.tensors import RequestTensor, TensorSpec

SHAPE_AUTO_DEPRECATED = (
    "Shape auto is deprecated. Use model dynamic shapes instead: -1 for any size or a range "
    "such as (1,3,200:500,200:500) compiles once and serves every shape without a reload."
)
BATCH_AUTO_DEPRECATED = (
    "Batch size auto is deprecated. Use model dynamic shapes instead: --batch_size -1 or a "
    "range such as 1:8 compiles once and serves every batch size without a reload."
)


def uses_auto(config: ModelConfig) -> bool:
    """True when any shape or the batch size is ``auto``."""
    return config.batch_size == AUTO or any(value == AUTO for value in config.shape.values())


@dataclass(frozen=True, slots=True)
class Reshape:
    """Concrete shapes to compile for: config shape keys to shapes, and/or a batch size."""

    shapes: dict[str, Shape]
    batch: int | None = None

    def __str__(self) -> str:
        parts = [f"{name or 'input'} {shape}" for name, shape in self.shapes.items()]
        if self.batch is not None:
            parts.append(f"batch size {self.batch}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class AutoShape:
    """The ``auto`` parts of a model config."""

    shape_keys: tuple[str, ...]
    """``config.shape`` keys whose value is ``auto`` (input names, aliases or anonymous)."""
    batch: bool
    aliases: dict[str, str]
    """Real input name to alias (``mapping_config.json``): specs carry the aliases."""

    @classmethod
    def of(cls, config: ModelConfig) -> AutoShape | None:
        """The auto parts of ``config``, or None when nothing is ``auto``."""
        if not uses_auto(config):
            return None
        keys = tuple(key for key, value in config.shape.items() if value == AUTO)
        return cls(keys, config.batch_size == AUTO, dict(config.mapping.inputs))

    def target(
        self, specs: Sequence[TensorSpec], tensors: Sequence[RequestTensor]
    ) -> Reshape | None:
        """The reshape a request needs, or None when it fits (or is invalid anyway).

        Invalid requests (missing inputs, non-positive sizes, a wrong rank for a batch) are
        left to validation, which reports them with OVMS's messages.
        """
        by_name = {tensor.name: tensor for tensor in tensors}
        mismatch = False
        shapes: dict[str, Shape] = {}
        for key in self.shape_keys:
            spec = self._spec_for(key, specs)
            tensor = by_name.get(spec.name) if spec is not None else None
            if spec is None or tensor is None or not _positive(tensor.shape):
                return None
            mismatch = mismatch or not spec.shape.match(tensor.shape)
            shapes[key] = Shape.of(*tensor.shape)
        batch: int | None = None
        if self.batch:
            for spec in specs:
                index = batch_index(spec)
                tensor = by_name.get(spec.name)
                if index is None or tensor is None:
                    continue
                if len(tensor.shape) != spec.shape.rank or not _positive(tensor.shape):
                    return None
                size = tensor.shape[index]
                batch = size if batch is None else batch
                mismatch = mismatch or not spec.shape.dims[index].match(size)
        return Reshape(shapes, batch) if mismatch else None

    def _spec_for(self, key: str, specs: Sequence[TensorSpec]) -> TensorSpec | None:
        if key == ANONYMOUS_INPUT:
            return specs[0] if len(specs) == 1 else None
        name = self.aliases.get(key, key)
        return next((spec for spec in specs if spec.name == name), None)

    @staticmethod
    def apply(config: ModelConfig, reshape: Reshape) -> ModelConfig:
        """``config`` with the ``auto`` parts replaced by the reshape's concrete values."""
        shape = {**config.shape, **reshape.shapes}
        if reshape.batch is None:
            return replace(config, shape=shape)
        return replace(config, shape=shape, batch_size=Dimension.static(reshape.batch))


def _positive(sizes: tuple[int, ...]) -> bool:
    return all(size > 0 for size in sizes)
