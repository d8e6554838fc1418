"""The whole server's configuration: ports, limits, logging and the models to serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ovserve.config.batching import BatchingConfig
from ovserve.config.config_file import ConfigFile
from ovserve.config.model_config import ModelConfig
from ovserve.config.tls import TlsConfig
from ovserve.config.worker_slot import WorkerSlot

GRPC_STACKS = ("native", "grpcio")
"""The gRPC transports (``--grpc_stack``)."""

DEFAULT_MAX_GRPC_MESSAGE_BYTES = 1024 * 1024 * 1024
"""OVMS allows 1 GiB gRPC messages; so do we (images at 4K as FP32 are ~100 MB)."""

DEFAULT_MAX_REST_BODY_BYTES = 1024 * 1024 * 1024
"""Same limit for HTTP bodies, as OVMS."""


@dataclass(frozen=True)
class ServerConfig:
    """Parsed from argv (and config.json); immutable past the edge."""

    port: int = 0
    rest_port: int = 0
    grpc_bind_address: str = "0.0.0.0"
    rest_bind_address: str = "0.0.0.0"
    grpc_workers: int = 1
    rest_workers: int | None = None
    log_level: str = "INFO"
    log_path: Path | None = None
    file_system_poll_wait_seconds: float = 1.0
    metrics_enable: bool = False
    metrics_list: tuple[str, ...] = ()
    config_path: Path | None = None
    models: tuple[ModelConfig, ...] = ()
    config_file: ConfigFile | None = None
    """The parsed ``--config_path`` file; its models are loaded at start and it is polled."""
    cache_dir: Path | None = None
    """OpenVINO model cache for every model (``--cache_dir``)."""
    max_grpc_message_bytes: int = DEFAULT_MAX_GRPC_MESSAGE_BYTES
    max_rest_body_bytes: int = DEFAULT_MAX_REST_BODY_BYTES
    shutdown_grace_seconds: float = 30.0
    rest_header_timeout_seconds: float = 30.0
    """A request's headers must arrive within this time of its first byte (else 408)."""
    rest_body_timeout_seconds: float = 30.0
    """Longest silence while a request body arrives (else 408)."""
    rest_keep_alive_timeout_seconds: float = 60.0
    """Idle keep-alive connections close after this time."""
    rest_max_connections: int = 0
    """Open HTTP connections beyond which new ones get 503 (0: from the open-file limit)."""
    rest_write_buffer_bytes: int = 4 * 1024 * 1024
    """Unsent reply bytes on one connection above which its requests are no longer read."""
    rest_memory_quota: int = 64 * 1024 * 1024
    """Request body bytes being received and decoded at once (0: unlimited)."""
    grpc_max_connections: int = 0
    """Open gRPC connections beyond which new ones are refused (0: from the open-file limit)."""
    grpc_stack: str = "native"
    """The gRPC transport: ``native`` (our HTTP/2 on the event loop) or ``grpcio`` (grpc.aio)."""
    tls: TlsConfig | None = None
    """TLS (and mutual TLS) for both ports; None is plaintext."""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    """Dynamic batching defaults for every model (``--dynamic_batching`` and friends)."""
    workers: int = 1
    """Serving processes sharing the ports (``--grpc_workers`` / ``--rest_workers``)."""
    worker_slot: WorkerSlot | None = None
    """Set in each worker process of a multi-worker server."""
