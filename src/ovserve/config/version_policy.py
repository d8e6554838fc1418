"""Model version policies: which of the versions on disk are served.

OVMS's JSON forms: ``{"latest": {"num_versions": N}}``, ``{"all": {}}`` and
``{"specific": {"versions": [1, 3]}}``. The default is ``latest`` with one version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ovserve.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LatestVersions:
    """Serve the ``num_versions`` highest versions."""

    num_versions: int = 1

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve, ascending."""
        return sorted(available)[-self.num_versions :]


@dataclass(frozen=True, slots=True)
class AllVersions:
    """Serve every version."""

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve, ascending."""
        return sorted(available)


@dataclass(frozen=True, slots=True)
class SpecificVersions:
    """Serve the listed versions (those present on disk)."""

    versions: frozenset[int]

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve, ascending."""
        return sorted(set(available) & self.versions)


VersionPolicy = LatestVersions | AllVersions | SpecificVersions

DEFAULT_POLICY = LatestVersions(1)


def parse_version_policy(value: object) -> VersionPolicy:
    """Parse a policy given as JSON text (CLI) or an already-decoded object (config.json)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"Model version policy is not valid JSON: {value!r}") from None
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(
            'Model version policy must be one of {"latest": {"num_versions": N}}, {"all": {}}, '
            f'{{"specific": {{"versions": [...]}}}}; got {value!r}'
        )
    ((kind, body),) = value.items()
    if not isinstance(body, dict):
        raise ConfigError(f"Model version policy {kind!r} must hold an object, got {body!r}")
    if kind == "all":
        if body:
            raise ConfigError(f'Model version policy "all" takes no fields, got {body!r}')
        return AllVersions()
    if kind == "latest":
        count = body.get("num_versions", 1)
        if set(body) - {"num_versions"} or not _is_positive_int(count):
            raise ConfigError(
                f'Model version policy "latest" needs a positive "num_versions", got {body!r}'
            )
        return LatestVersions(count)
    if kind == "specific":
        versions = body.get("versions")
        if (
            set(body) != {"versions"}
            or not isinstance(versions, list)
            or not versions
            or not all(_is_positive_int(version) for version in versions)
        ):
            raise ConfigError(
                f'Model version policy "specific" needs a list of positive "versions", got {body!r}'
            )
        return SpecificVersions(frozenset(versions))
    raise ConfigError(f"Unknown model version policy {kind!r}: use latest, all or specific")


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
