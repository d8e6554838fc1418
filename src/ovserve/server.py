"""Composition root: builds the engine, models, service and servers; runs until a signal."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import uvloop

from ovserve.config.server_config import ServerConfig
from ovserve.engine.base import InferenceEngine
from ovserve.engine.openvino_engine import OpenVINOEngine
from ovserve.errors import ConfigError
from ovserve.frontends.failure_log import FAILURES
from ovserve.heap import keep_request_buffers
from ovserve.metrics import Metrics, add_batch_sizes, render_everywhere_with
from ovserve.serving.batching import BatchingEngine
from ovserve.serving.load_watchdog import LoadWatchdog
from ovserve.serving.model_instance import ModelVersionState
from ovserve.serving.model_manager import ModelManager
from ovserve.serving.reloader import Reloader
from ovserve.serving.service import ServingService
from ovserve.serving.variant_metrics import attach as attach_variant_metrics

if TYPE_CHECKING:
    from ovserve.workers.peers import PeerLink

log = logging.getLogger("ovserve.server")


class Frontend(Protocol):
    """A started network server that can stop gracefully."""

    async def stop(self, grace: float) -> None:
        """Stop accepting, finish in-flight requests (up to ``grace`` seconds), close."""


@dataclass
class Server:
    """Everything one ovserve process runs."""

    config: ServerConfig
    engine: InferenceEngine = field(default_factory=OpenVINOEngine)
    frontends: list[Frontend] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.batching = BatchingEngine(self.engine, self.config.batching)
        self.models = ModelManager(self.batching)
        self.metrics = Metrics(self.config.metrics_enable, self.config.metrics_list)
        add_batch_sizes(self.metrics, self.batching.stats)
        self.service = ServingService(self.models, self.metrics)
        self.watchdog = LoadWatchdog(self.models.tracker)
        attach_variant_metrics(self.metrics, self.service)
        self.reloader = Reloader(
            self.models,
            poll_seconds=self.config.file_system_poll_wait_seconds,
            config_path=self.config.config_file.path if self.config.config_file else None,
            cache_dir=self.config.cache_dir,
        )
        self._stop = asyncio.Event()
        self._peers: PeerLink | None = None
        self._ready_task: asyncio.Task[None] | None = None

    async def _load_flag_models(self) -> None:
        """Single-model mode: the model must load, or the server does not start."""
        for model_config in self.config.models:
            model = await self.models.add_model(model_config)
            failed = [
                instance
                for instance in model.versions.values()
                if instance.state is not ModelVersionState.AVAILABLE
            ]
            if failed:
                # The reason was logged when the version failed; say only what follows from it.
                raise ConfigError(
                    f"Model {model.name} version {failed[0].version} did not load "
                    "(see the error above): the server does not start"
                )
            if not model.versions:
                raise ConfigError(
                    f"No version found for model {model.name} in {model_config.base_path}: "
                    "expected numbered version folders (1, 2, ...) holding the model files, or the "
                    "model files"
                )

    async def start(self) -> None:
        """Open the ports, then load the models. Raises ConfigError on any start-up problem.

        The ports come first, as in OVMS: a port in use fails in a moment instead of after
        compiling every model, and liveness answers while models load (readiness waits for
        them). From a config file, a model that fails is logged and shown in status while the
        others serve; a single model given by flags must load.
        """
        await self._join_workers()
        from ovserve.frontends.request_budget import budget_from

        budget = budget_from(self.config)  # one memory quota for both transports
        if self.config.port:
            from ovserve.frontends.grpc_server import start_grpc_server

            self.frontends.append(await start_grpc_server(self.service, self.config, budget))
        if self.config.rest_port:
            from ovserve.frontends.rest_api import start_rest_server

            self.frontends.append(await start_rest_server(self.service, self.config, budget))
        self.watchdog.start()  # says which loads hold the start up, and in which step
        if self.config.config_file is not None:
            await self.reloader.apply(self.config.config_file)
            self.service.reloader = self.reloader
        else:
            await self._load_flag_models()
        self.reloader.start()
        if self._peers is None:
            self.service.ready = True
            log.info("ovserve is ready: %s", self._describe_ports())
            return
        if self.config.config_file is not None:
            from ovserve.workers.peers import BroadcastReloader

            self.service.reloader = BroadcastReloader(self.reloader, self._peers)
        await self._peers.mark_ready()
        self._ready_task = asyncio.create_task(self._ready_with_all_workers(self._peers))

    async def _join_workers(self) -> None:
        """In a multi-worker server: answer the other workers from the start (scrapes, reloads)."""
        slot = self.config.worker_slot
        if slot is None:
            return
        from ovserve.workers.peers import PeerLink

        local = self.reloader if self.config.config_file is not None else None
        self._peers = PeerLink(slot, self.metrics, local)
        await self._peers.start()
        render_everywhere_with(self.metrics, self._peers.render_metrics)
        log.info("Worker %d of %d (pid %d)", slot.index, slot.count, os.getpid())

    async def _ready_with_all_workers(self, peers: PeerLink) -> None:
        """Report ready once every worker has loaded: any of them may answer a readiness probe,
        and a ready server must not send requests to a worker still loading its models."""
        await peers.wait_all_ready()
        if not self._stop.is_set():
            self.service.ready = True
            log.info("ovserve is ready: %s", self._describe_ports())

    def _describe_ports(self) -> str:
        parts = []
        if self.config.port:
            parts.append(f"gRPC on {self.config.grpc_bind_address}:{self.config.port}")
        if self.config.rest_port:
            parts.append(f"REST on {self.config.rest_bind_address}:{self.config.rest_port}")
        return ", ".join(parts)

    def request_stop(self) -> None:
        """Ask the server to shut down (signal handlers call this)."""
        self._stop.set()

    async def wait_stopped(self) -> None:
        """Block until a stop is requested."""
        await self._stop.wait()

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, retire the models."""
        self.service.ready = False
        await self.reloader.stop()
        grace = self.config.shutdown_grace_seconds
        await asyncio.gather(*(frontend.stop(grace) for frontend in self.frontends))
        self.frontends.clear()
        FAILURES.flush()
        if self._ready_task is not None:
            self._ready_task.cancel()
        if self._peers is not None:
            await self._peers.stop()
        await self.models.retire_all()
        await self.watchdog.stop()

    def close(self) -> None:
        """Release the engine's resources explicitly (OpenVINO can abort at exit otherwise)."""
        self.models.close()


async def serve(config: ServerConfig) -> int:
    """Run a server until SIGTERM/SIGINT; return the process exit status."""
    server = Server(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    try:
        try:
            await server.start()
        except ConfigError as error:
            log.error("%s", error.log_text)
            await server.stop()
            return 1
        await server.wait_stopped()
        log.info("Shutting down: finishing in-flight requests")
        await server.stop()
        log.info("Stopped")
        return 0
    finally:
        server.close()


def run_server(config: ServerConfig) -> int:
    """Run the server on uvloop and return the exit status."""
    keep_request_buffers()
    return uvloop.run(serve(config))
