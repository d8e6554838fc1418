"""The file-system poller: version folders and config.json, checked every poll period.

Each poll rescans every model's version folders and, when serving from a config file,
re-reads the file and applies it if its content hash changed. An invalid file applies nothing
and is logged once (until its content changes again). ``POST /v1/config/reload`` runs the
same steps on demand through :meth:`Reloader.reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from ovserve.config.config_file import (
    ConfigFile,
    ConfigFileUnreadable,
    file_digest,
    parse_config,
    read_file_bytes,
)
from ovserve.errors import ConfigError
from ovserve.serving.model_manager import ModelManager

log = logging.getLogger(__name__)

CONFIG_NOT_FOUND = "Config file not found or cannot open."
RELOAD_FAILED = "Reloading config file failed. Check server logs for more info."
_UNREADABLE = "<unreadable>"


class Reloader:
    """Keeps the served models in line with the disk; the service's ``ConfigReloader``."""

    def __init__(
        self,
        models: ModelManager,
        *,
        poll_seconds: float,
        config_path: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._models = models
        self._poll_seconds = poll_seconds
        self._config_path = config_path
        self._cache_dir = cache_dir
        self._seen_digest: str | None = None
        """Hash of the file content last looked at (applied or rejected): not re-logged."""
        self._applied_digest: str | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def apply(self, config_file: ConfigFile) -> bool:
        """Apply a parsed config file: add, reload and retire models. True if anything changed."""
        async with self._lock:
            return await self._apply(config_file)

    async def _apply(self, config_file: ConfigFile) -> bool:
        self._seen_digest = self._applied_digest = config_file.digest
        for rejected in config_file.errors:
            log.error(
                "Model %s is not served from the config file: %s",
                json.dumps(rejected.name),  # control characters escaped, one line per model
                rejected.text,
            )
            self._models.reject_model(rejected.name, rejected.text)
        named = {config.name for config in config_file.models}
        named.update(rejected.name for rejected in config_file.errors)
        changes = await asyncio.gather(
            *(self._models.apply_model(config) for config in config_file.models),
            *(
                self._models.retire_model(model.name)
                for model in self._models
                if model.name not in named
            ),
        )
        return any(changes)

    async def reload(self) -> bool:
        """Re-read the config file now and apply it if changed, then rescan versions.

        Raises ConfigError with OVMS's texts; the log says what exactly is wrong.
        """
        return await asyncio.shield(self._reload())

    async def _reload(self) -> bool:
        if self._config_path is None:
            raise ConfigError(CONFIG_NOT_FOUND)
        async with self._lock:
            try:
                data = await asyncio.to_thread(read_file_bytes, self._config_path)
            except ConfigFileUnreadable as error:
                log.error("%s", error.text)
                raise ConfigError(CONFIG_NOT_FOUND) from None
            changed = False
            digest = file_digest(data)
            if digest != self._applied_digest:
                self._seen_digest = digest
                try:
                    config_file = parse_config(data, self._config_path, cache_dir=self._cache_dir)
                except ConfigError as error:
                    log.error("Reloading config file %s failed: %s", self._config_path, error.text)
                    raise ConfigError(RELOAD_FAILED) from None
                log.info("Config file %s changed: applying it", self._config_path)
                changed = await self._apply(config_file)
            return await self._models.sync_all() or changed

    async def poll_once(self) -> bool:
        """One poll: the config file if its content changed, then every model's versions."""
        async with self._lock:
            changed = await self._check_config_file()
            return await self._models.sync_all() or changed

    async def _check_config_file(self) -> bool:
        if self._config_path is None:
            return False
        try:
            data = await asyncio.to_thread(read_file_bytes, self._config_path)
        except ConfigFileUnreadable as error:
            if self._seen_digest != _UNREADABLE:
                log.error("%s; the served models stay as they are", error.text)
            self._seen_digest = _UNREADABLE
            return False
        digest = file_digest(data)
        if digest == self._seen_digest:
            return False
        self._seen_digest = digest
        try:
            config_file = parse_config(data, self._config_path, cache_dir=self._cache_dir)
        except ConfigError as error:
            log.error(
                "Config file %s changed but is invalid, nothing applied: %s",
                self._config_path,
                error.text,
            )
            return False
        log.info("Config file %s changed: applying it", self._config_path)
        return await self._apply(config_file)

    def start(self) -> None:
        """Start polling (unless the poll period is 0)."""
        if self._poll_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="file-system-poller")

    async def stop(self) -> None:
        """Stop polling; a poll under way finishes first (never cut mid-load)."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._poll_seconds)
            if self._stopping.is_set():
                return
            try:
                await self.poll_once()
            except Exception:  # the poller must outlive any one bad poll
                log.exception("File system poll failed")
