"""OVMS's shape grammar: dimensions, shapes, the ``--shape`` and ``--batch_size`` values.

A dimension is static (``3``), any (``-1``) or an inclusive range (``200:500``). A shape is a
tuple of dimensions, written ``(1,3,200:500,-1)``. ``--shape`` takes a tuple (bound to the
model's only input), ``auto``, or a JSON object of input name to either; ``--batch_size``
takes one dimension or ``auto``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from ovserve.errors import ConfigError

AUTO: Final = "auto"
Auto = Literal["auto"]

ANONYMOUS_INPUT: Final = ""
"""Key under which a shape given as a bare tuple is stored: it binds to the only input."""

SHAPE_PARSE_ERROR: Final = "Couldn't parse shape parameter"
BATCH_PARSE_ERROR: Final = "Couldn't parse batch_size parameter"


@dataclass(frozen=True, slots=True)
class Dimension:
    """One dimension: ``lower == upper`` is static; ``upper is None`` has no upper bound."""

    lower: int
    upper: int | None

    @classmethod
    def static(cls, value: int) -> Dimension:
        """A fixed size."""
        return cls(value, value)

    @classmethod
    def any(cls) -> Dimension:
        """OVMS's ``-1``: any size."""
        return cls(0, None)

    @classmethod
    def range(cls, lower: int, upper: int) -> Dimension:
        """An inclusive range ``lower:upper``."""
        return cls(lower, upper)

    @property
    def is_static(self) -> bool:
        """True for a fixed size."""
        return self.lower == self.upper

    @property
    def is_any(self) -> bool:
        """True for ``-1``."""
        return self.lower == 0 and self.upper is None

    def match(self, value: int) -> bool:
        """Whether a concrete size fits (ranges are inclusive)."""
        return self.lower <= value and (self.upper is None or value <= self.upper)

    def metadata_size(self) -> int:
        """The size metadata reports: the static size, else ``-1`` (ranges are reported as -1)."""
        return self.lower if self.is_static else -1

    def __str__(self) -> str:
        if self.is_static:
            return str(self.lower)
        if self.is_any:
            return "-1"
        upper = -1 if self.upper is None else self.upper
        return f"[{self.lower}~{upper}]"


@dataclass(frozen=True, slots=True)
class Shape:
    """A partial shape: a tuple of :class:`Dimension`."""

    dims: tuple[Dimension, ...]

    @classmethod
    def of(cls, *sizes: int | Dimension) -> Shape:
        """Build from ints (``-1`` means any) and Dimensions."""
        return cls(tuple(_as_dimension(size) for size in sizes))

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.dims)

    @property
    def is_static(self) -> bool:
        """True when every dimension is fixed."""
        return all(dim.is_static for dim in self.dims)

    def match(self, sizes: Iterable[int]) -> bool:
        """Whether a concrete shape fits this partial shape."""
        sizes = tuple(sizes)
        return len(sizes) == self.rank and all(
            dim.match(size) for dim, size in zip(self.dims, sizes, strict=True)
        )

    def metadata_sizes(self) -> list[int]:
        """Sizes as metadata reports them (``-1`` for any non-static dimension)."""
        return [dim.metadata_size() for dim in self.dims]

    def __str__(self) -> str:
        return "(" + ",".join(str(dim) for dim in self.dims) + ")"


def format_sizes(sizes: Iterable[int]) -> str:
    """A concrete shape as OVMS prints it: ``(1,3,600,400)``."""
    return "(" + ",".join(str(size) for size in sizes) + ")"


def _as_dimension(size: int | Dimension) -> Dimension:
    if isinstance(size, Dimension):
        return size
    return Dimension.any() if size == -1 else Dimension.static(size)


# ASCII digits only: ``\d`` alone would take other scripts' digits, which OVMS rejects.
_DIMENSION = re.compile(r"^(?:(-1)|(\d+)|(\d+):(\d+))$", re.ASCII)
_SHAPE_CHARS = re.compile(r"^[0-9(),\-:\[\]]*$")


def parse_dimension(text: str) -> Dimension:
    """Parse ``N``, ``-1`` or ``min:max`` (0 <= min < max); raise ValueError otherwise."""
    match = _DIMENSION.match(text.strip())
    if match is None:
        raise ValueError(f"invalid dimension {text!r}")
    any_, static, lower, upper = match.groups()
    if any_ is not None:
        return Dimension.any()
    if static is not None:
        return Dimension.static(int(static))
    low, high = int(lower), int(upper)
    if low >= high:
        raise ValueError(f"invalid range {text!r}: the minimum must be below the maximum")
    return Dimension.range(low, high)


def parse_shape(text: str) -> Shape:
    """Parse a shape tuple such as ``(1,3,200:500,-1)``; raise ValueError otherwise."""
    compact = "".join(text.split())
    if not _SHAPE_CHARS.match(compact) or len(compact) < 2:
        raise ValueError(f"invalid shape {text!r}")
    if not (
        (compact[0] == "(" and compact[-1] == ")") or (compact[0] == "[" and compact[-1] == "]")
    ):
        raise ValueError(f"invalid shape {text!r}: expected (d0,d1,...)")
    body = compact[1:-1]
    if not body:
        return Shape(())
    return Shape(tuple(parse_dimension(part) for part in body.split(",")))


ShapeValue = Shape | Auto
"""A configured shape: a partial shape or ``auto`` (reshape on the first request of a new shape)."""

ShapeConfig = Mapping[str, ShapeValue]
"""Input name (or :data:`ANONYMOUS_INPUT`) to its configured shape."""


def parse_shape_value(value: object, *, allow_lists: bool = False) -> ShapeValue:
    """One shape: ``auto``, a tuple string or (config.json only) a list of non-negative ints."""
    if isinstance(value, str):
        if value.strip() == AUTO:
            return AUTO
        return parse_shape(value)
    if (
        allow_lists
        and isinstance(value, list)
        and all(isinstance(size, int) and not isinstance(size, bool) for size in value)
    ):
        if any(size < 0 for size in value):
            raise ValueError("shape lists take non-negative sizes")
        return Shape.of(*value)
    raise ValueError(f"invalid shape value {value!r}")


def parse_shape_param(text: str, *, allow_lists: bool = False) -> dict[str, ShapeValue]:
    """Parse a ``--shape`` value into a :data:`ShapeConfig`.

    Raises :class:`ConfigError` with OVMS's ``Couldn't parse shape parameter``.
    """
    stripped = text.strip()
    try:
        if stripped.startswith("{"):
            parsed = json.loads(stripped)
            if not isinstance(parsed, dict):
                raise ValueError("shape JSON must be an object")
            return {
                str(name): parse_shape_value(value, allow_lists=allow_lists)
                for name, value in parsed.items()
            }
        return {ANONYMOUS_INPUT: parse_shape_value(stripped)}
    except ValueError as error:
        raise ConfigError(f"{SHAPE_PARSE_ERROR}: {error}") from None


def parse_shape_object(value: object) -> dict[str, ShapeValue]:
    """A config.json ``shape``: a string as on the CLI, or an object of name to string/list."""
    if isinstance(value, str):
        return parse_shape_param(value, allow_lists=True)
    if isinstance(value, list):
        try:
            return {ANONYMOUS_INPUT: parse_shape_value(value, allow_lists=True)}
        except ValueError as error:
            raise ConfigError(f"{SHAPE_PARSE_ERROR}: {error}") from None
    if isinstance(value, dict):
        try:
            return {
                str(name): parse_shape_value(item, allow_lists=True) for name, item in value.items()
            }
        except ValueError as error:
            raise ConfigError(f"{SHAPE_PARSE_ERROR}: {error}") from None
    raise ConfigError(f"{SHAPE_PARSE_ERROR}: invalid shape value {value!r}")


BatchSize = Dimension | Auto


def parse_batch_size(value: str | int) -> BatchSize:
    """Parse ``--batch_size``: ``N`` (> 0), ``-1``, ``N:M`` (0 < N < M) or ``auto``."""
    text = str(value).strip()
    if text == AUTO:
        return AUTO
    try:
        dim = parse_dimension(text)
    except ValueError as error:
        raise ConfigError(f"{BATCH_PARSE_ERROR}: {error}") from None
    if not dim.is_any and dim.lower <= 0:
        raise ConfigError(f"{BATCH_PARSE_ERROR}: batch size must be positive, got {text!r}")
    return dim
