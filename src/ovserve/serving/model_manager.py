"""ModelManager: model names to their versions; load, reload, retire, close.

Version changes never drop a request: a new version serves (and becomes the default) only
once AVAILABLE; a reloaded version is swapped in only after its replacement compiled; a
version leaving service first stops taking requests, then waits for those in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from ovserve.config.model_config import ModelConfig
from ovserve.engine.base import InferenceEngine
from ovserve.errors import ConfigError, ModelNotFound, ModelNotReady, ModelRetired, VersionNotFound
from ovserve.repository.source import open_source
from ovserve.repository.versions import FolderStamp, find_model_file, folder_stamps
from ovserve.serving.auto_shape import BATCH_AUTO_DEPRECATED, SHAPE_AUTO_DEPRECATED
from ovserve.serving.load_watchdog import LoadTracker
from ovserve.serving.model_instance import ModelInstance, ModelVersionState, VersionStatus

log = logging.getLogger(__name__)

DOWNLOAD_RETRY_SECONDS = 5.0
"""A version whose download failed (object storage unreachable...) is tried again this much
later, on the next poll; other load failures wait for the version's files to change."""

_NOT_RELOADING = frozenset({"name", "version_policy"})
"""ModelConfig fields whose change only re-selects versions (OVMS's isReloadRequired)."""


def needs_reload(old: ModelConfig, new: ModelConfig) -> bool:
    """Whether loaded versions must be recompiled for ``new`` (not just re-selected)."""
    return any(
        getattr(old, item.name) != getattr(new, item.name)
        for item in fields(ModelConfig)
        if item.name not in _NOT_RELOADING
    )


class ServedModel:
    """One model name and all its versions, current and retired."""

    def __init__(
        self, config: ModelConfig, engine: InferenceEngine, tracker: LoadTracker | None = None
    ) -> None:
        self.config = config
        self._engine = engine
        self._tracker = tracker or LoadTracker()
        self._failed_stamps: dict[int, FolderStamp] = {}
        """Versions that failed to load, with their folder's stamp at the time."""
        self.versions: dict[int, ModelInstance] = {}
        self._lock = asyncio.Lock()
        self.active = True
        """False once removed from the config file (or never validly configured)."""
        self.config_error = ""
        """Why the model's config entry was rejected (the previous config keeps serving)."""
        self.path_error = ""
        """Why the base path could not be scanned on the last sync."""
        self._skipped: tuple[str, ...] = ()
        self._source = open_source(config.base_path, config.name)
        """Lists versions and provides their files (downloads them for a remote path)."""
        self._retry_downloads: dict[int, float] = {}
        """Versions whose download failed → when (monotonic) to try again."""
        _warn_auto(config)

    @classmethod
    def failed(
        cls, name: str, error: str, engine: InferenceEngine, tracker: LoadTracker | None = None
    ) -> ServedModel:
        """A model whose config entry is invalid: not served, its status shows ``error``."""
        model = cls(ModelConfig(name=name, base_path=Path()), engine, tracker)
        model.active = False
        model.config_error = error
        return model

    @property
    def name(self) -> str:
        """The served model name."""
        return self.config.name

    @property
    def error(self) -> str:
        """Model-level problems (config entry, base path), or ""."""
        return "; ".join(error for error in (self.config_error, self.path_error) if error)

    def statuses(self) -> list[VersionStatus]:
        """Each version's status; model-level errors show on every version (or on version 0
        when there is none), so a status request always explains why nothing serves."""
        statuses = [instance.status for _, instance in sorted(self.versions.items())]
        error = self.error
        if not error:
            return statuses
        if not statuses:
            return [VersionStatus(0, ModelVersionState.END, error)]
        return [
            status if status.error else VersionStatus(status.version, status.state, error)
            for status in statuses
        ]

    def available(self) -> list[ModelInstance]:
        """AVAILABLE versions, ascending."""
        return [instance for _, instance in sorted(self.versions.items()) if instance.is_available]

    def _highest_available(self) -> ModelInstance | None:
        """The default version: one pass, no sorting (this runs on every request)."""
        best_version, best = 0, None
        for number, instance in self.versions.items():
            if instance.is_available and number > best_version:
                best_version, best = number, instance
        return best

    def instance(self, version: int | None) -> ModelInstance:
        """The requested version, or the highest AVAILABLE one when ``version`` is None/0."""
        if not version:
            default = self._highest_available()
            if default is not None:
                return default
            if any(
                instance.state in (ModelVersionState.START, ModelVersionState.LOADING)
                for instance in self.versions.values()
            ):
                raise ModelNotReady()
            raise VersionNotFound()
        try:
            instance = self.versions[version]
        except KeyError:
            raise VersionNotFound() from None
        if instance.state in (ModelVersionState.START, ModelVersionState.LOADING):
            raise ModelNotReady()
        if instance.state is not ModelVersionState.AVAILABLE:
            if instance.error and instance.state is ModelVersionState.END:
                raise ModelNotReady(f"version {version} failed to load")
            raise ModelRetired()
        return instance

    async def sync_versions(self, config: ModelConfig | None = None) -> bool:
        """Apply ``config`` (if given), then load the versions the policy selects from disk and
        retire the others. Returns True when anything changed.

        A version that fails to load never retires a serving one: the policy then selects
        among the versions that do load (serving v1, a corrupt v2 appears: v1 keeps serving,
        v2 shows its error). A failed version is tried again when its folder changes (a failed
        download: on a later poll), or when the model's config does. A changed config
        recompiles the served versions (swapped in once compiled; a version whose recompile
        fails keeps serving and shows the error). Raises ConfigError when the base path is
        unusable; loaded versions then keep serving.
        """
        async with self._lock:
            reload_all = False
            if config is not None:
                reload_all = not self.active or needs_reload(self.config, config)
                if config != self.config:
                    _warn_auto(config)
                if config.base_path != self.config.base_path:
                    await asyncio.to_thread(self._source.close)
                    self._source = open_source(config.base_path, config.name)
                self.config, self.active, self.config_error = config, True, ""
            if not self.active:
                return False
            on_disk = await self._scan()
            stamps = await asyncio.to_thread(folder_stamps, on_disk)
            for version in set(self._failed_stamps) - set(on_disk):
                del self._failed_stamps[version]  # gone: a re-added folder is tried afresh
                if self.versions[version].state is ModelVersionState.END:
                    del self.versions[version]
                    await asyncio.to_thread(self._source.release, version)
            if reload_all:
                self._failed_stamps.clear()
            now = time.monotonic()
            retry = {version for version, at in self._retry_downloads.items() if at <= now}
            candidates = {
                version: folder
                for version, folder in on_disk.items()
                if version not in self._failed_stamps
                or version in retry
                or self._failed_stamps[version] != stamps.get(version)
            }
            serving = {v for v, instance in self.versions.items() if instance.is_available}
            wanted, tried = await self._load_selected(candidates, serving, stamps)
            loaded = {version for version in tried if self.versions[version].is_available}
            to_reload = sorted((wanted & serving) - loaded) if reload_all else []
            retiring = [self.versions[version] for version in sorted(serving - wanted)]
            replaced = await asyncio.gather(
                *(self._reload_version(version, on_disk[version]) for version in to_reload)
            )
            retired = [instance.version for instance in retiring]
            retiring += [old for old in replaced if old is not None]
            await asyncio.gather(*(instance.retire() for instance in retiring))
            for version in retired:  # a reloaded version keeps its files: they still serve
                await asyncio.to_thread(self._source.release, version)
            return bool(tried or to_reload or retiring)

    async def _load_selected(
        self, candidates: dict[int, Path], serving: set[int], stamps: dict[int, FolderStamp]
    ) -> tuple[set[int], set[int]]:
        """Load what the policy selects among ``candidates``; a version that fails drops out
        and the policy selects again. Returns (versions to serve, versions tried)."""
        tried: set[int] = set()
        while True:
            wanted = set(self.config.version_policy.select(candidates))
            to_load = sorted(wanted - serving - tried)
            if not to_load:
                return wanted, tried
            tried.update(to_load)
            await asyncio.gather(
                *(self._load_version(v, candidates[v], stamps.get(v, ())) for v in to_load)
            )
            for version in to_load:
                if not self.versions[version].is_available:
                    del candidates[version]

    async def _scan(self) -> dict[int, Path]:
        try:
            try:
                scan = await asyncio.to_thread(self._source.scan)
                on_disk, skipped = scan.versions, scan.skipped
            except OSError as error:  # e.g. no permission, or the folder vanished mid-scan
                raise ConfigError(
                    f"Cannot scan model path: {error.strerror or type(error).__name__}",
                    log_text=f"Cannot scan model path {self.config.base_path}: {error}",
                ) from None
        except ConfigError as error:
            if error.text != self.path_error:
                log.error("Model %s: %s", self.name, error.log_text)
            self.path_error = error.text  # shown to clients: no filesystem path in it
            raise
        empty = ""
        if not on_disk and not self.versions:
            expected = (
                "expected numbered version folders (1, 2, ...) holding the model files, or the "
                "model files"
            )
            empty = f"No version found for model {self.name}: {expected}"
            if empty != self.path_error:
                log.warning(
                    "No version found for model %s in %s: %s",
                    self.name,
                    self.config.base_path,
                    expected,
                )
        self.path_error = empty
        if skipped != self._skipped and skipped:
            log.warning(
                "Model %s: ignoring %s in %s: expected version directory name to be a number "
                "greater than 0",
                self.name,
                ", ".join(skipped),
                self.config.base_path,
            )
        self._skipped = skipped
        return on_disk

    async def _new_instance(self, version: int, folder: Path) -> ModelInstance:
        """A compiled instance of ``folder``, or one in END that says why it could not be."""
        try:
            folder = await asyncio.to_thread(self._source.fetch, version, folder)
        except ConfigError as error:
            self._retry_downloads[version] = time.monotonic() + DOWNLOAD_RETRY_SECONDS
            return self._failed(version, folder, error)
        self._retry_downloads.pop(version, None)
        try:
            model_file = await asyncio.to_thread(find_model_file, folder)
        except ConfigError as error:
            await self._release_unless_serving(version)
            return self._failed(version, folder, error)
        instance = ModelInstance(self.config, version, model_file, self._engine, self._tracker)
        await instance.load()
        if not instance.is_available:
            await self._release_unless_serving(version)
        return instance

    async def _release_unless_serving(self, version: int) -> None:
        """Drop a version's local copy after a failed load, unless an older compile of it
        still serves (a failed reload keeps the old one)."""
        current = self.versions.get(version)
        if current is None or not current.is_available:
            await asyncio.to_thread(self._source.release, version)

    def _failed(self, version: int, folder: Path, error: ConfigError) -> ModelInstance:
        """An instance in END that says why the version could not load."""
        instance = ModelInstance(self.config, version, folder, self._engine, self._tracker)
        instance.state = ModelVersionState.END
        instance.error = error.text  # shown to clients: no filesystem path in it
        log.error("Model %s version %d: %s", self.name, version, error.log_text)
        return instance

    async def _load_version(self, version: int, folder: Path, stamp: FolderStamp) -> None:
        placeholder = ModelInstance(self.config, version, folder, self._engine, self._tracker)
        placeholder.state = ModelVersionState.LOADING  # status shows LOADING meanwhile
        self.versions[version] = placeholder
        instance = await self._new_instance(version, folder)
        self.versions[version] = instance
        if instance.is_available:
            self._failed_stamps.pop(version, None)
        else:
            self._failed_stamps[version] = stamp  # retried once the folder differs from this

    async def _reload_version(self, version: int, folder: Path) -> ModelInstance | None:
        """Recompile a served version; return the instance it replaced (to retire), if any."""
        old = self.versions[version]
        new = await self._new_instance(version, folder)
        if not new.is_available:
            old.error = f"Reloading with the new configuration failed, still serving: {new.error}"
            return None
        old.error = ""
        self.versions[version] = new
        return old

    async def retire(self) -> bool:
        """Stop serving every version (waiting for in-flight requests); True if any served."""
        async with self._lock:
            self.active = False
            self.config_error = self.path_error = ""
            serving = [i for i in self.versions.values() if i.state is not ModelVersionState.END]
            await asyncio.gather(*(instance.retire() for instance in serving))
            await asyncio.to_thread(self._source.close)
            return bool(serving)

    def close(self) -> None:
        """Release every version synchronously."""
        for instance in self.versions.values():
            instance.close()
        self._source.close()


def _warn_auto(config: ModelConfig) -> None:
    if any(value == "auto" for value in config.shape.values()):
        log.warning("Model %s: %s", config.name, SHAPE_AUTO_DEPRECATED)
    if config.batch_size == "auto":
        log.warning("Model %s: %s", config.name, BATCH_AUTO_DEPRECATED)


class ModelManager:
    """All served models by name."""

    def __init__(self, engine: InferenceEngine, tracker: LoadTracker | None = None) -> None:
        self._engine = engine
        self.tracker = tracker or LoadTracker()
        """Loads in progress, for the load watchdog."""
        self._models: dict[str, ServedModel] = {}

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(list(self._models.values()))

    def get(self, name: str) -> ServedModel:
        """The model with this name, or ModelNotFound."""
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound() from None

    def instance(self, name: str, version: int | None = None) -> ModelInstance:
        """An AVAILABLE instance for a request, or the error OVMS would give."""
        return self.get(name).instance(version)

    async def add_model(self, config: ModelConfig) -> ServedModel:
        """Register a model and load the versions its policy selects (strict: raises
        ConfigError for a duplicate name or an unusable base path)."""
        if config.name in self._models:
            raise ConfigError(f"Duplicate model name {config.name}")
        model = ServedModel(config, self._engine, self.tracker)
        self._models[config.name] = model
        await model.sync_versions()
        return model

    async def apply_model(self, config: ModelConfig) -> bool:
        """Add the model or bring it to ``config``; problems show in its status, never raise.

        Returns True when anything changed.
        """
        model = self._models.get(config.name)
        if model is None:
            model = self._models[config.name] = ServedModel(config, self._engine, self.tracker)
            config_arg = None
            changed = True
        else:
            config_arg = config
            changed = config != model.config or not model.active
        try:
            return await model.sync_versions(config_arg) or changed
        except ConfigError:
            return changed

    def reject_model(self, name: str, error: str) -> None:
        """Record an invalid config entry: a served model keeps its previous config."""
        model = self._models.get(name)
        if model is None:
            self._models[name] = ServedModel.failed(name, error, self._engine, self.tracker)
        else:
            model.config_error = error

    async def retire_model(self, name: str) -> bool:
        """Retire a model removed from the config (after its in-flight requests).

        Its versions stay in status as END; a model that never served is forgotten.
        """
        model = self._models.get(name)
        if model is None:
            return False
        changed = await model.retire()
        if not model.versions:
            self._models.pop(name, None)
            return True
        return changed

    async def sync_all(self) -> bool:
        """Rescan every active model's version folders; True when anything changed."""
        results = await asyncio.gather(
            *(model.sync_versions() for model in self._models.values() if model.active),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ConfigError):
                raise result
        return any(result is True for result in results)

    async def retire_all(self) -> None:
        """Retire every model, waiting for in-flight requests (shutdown)."""
        await asyncio.gather(*(model.retire() for model in self._models.values()))

    def close(self) -> None:
        """Release every compiled model synchronously (last step of shutdown)."""
        for model in self._models.values():
            model.close()
        self._engine.close()
