"""Command line: OVMS's flag names and meanings, parsed once into a ServerConfig."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from ovserve import __version__
from ovserve.config.batching import DEFAULT_MAX_BATCH_SIZE, MODES, BatchingConfig, check_limits
from ovserve.config.config_file import ConfigFile, read_config_file
from ovserve.config.layout import parse_layout_param
from ovserve.config.model_config import ModelConfig
from ovserve.config.model_name import check_model_name
from ovserve.config.model_path import parse_model_path
from ovserve.config.plugin_config import parse_plugin_config
from ovserve.config.preprocessing import (
    Preprocessing,
    PreprocessingValueError,
    parse_preprocessing,
    require_layout,
)
from ovserve.config.server_config import (
    DEFAULT_MAX_GRPC_MESSAGE_BYTES,
    GRPC_STACKS,
    ServerConfig,
)
from ovserve.config.shape import parse_batch_size, parse_shape_param
from ovserve.config.tls import read_tls
from ovserve.config.variants import (
    DEFAULT_IDLE_MEMORY_RELEASE_SECONDS,
    DEFAULT_MAX_SHAPE_VARIANTS,
    DEFAULT_SHAPE_VARIANT_THRESHOLD,
    DEFAULT_SHAPE_VARIANT_WINDOW_SECONDS,
    VariantConfig,
    parse_variant_config,
)
from ovserve.config.variants import KEYS as VARIANT_KEYS
from ovserve.config.version_policy import DEFAULT_POLICY, parse_version_policy
from ovserve.config.worker_slot import WorkerSlot
from ovserve.errors import ConfigError

log = logging.getLogger("ovserve")

EX_USAGE = 64
"""Exit status for invalid flags (sysexits.h), as OVMS uses."""

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
MODEL_FLAGS = (
    "shape",
    "batch_size",
    "layout",
    "model_version_policy",
    "nireq",
    "target_device",
    "plugin_config",
)


class _Parser(argparse.ArgumentParser):
    """Exits with EX_USAGE on unknown or malformed flags, as OVMS does (argparse uses 2).

    The message is at most three lines: the error, a "did you mean" for a mistyped flag, and
    where to find the list (argparse's usage dump would be fifteen lines).
    """

    def error(self, message: str) -> NoReturn:
        lines = [f"{self.prog}: error: {message}"]
        suggestion = self._suggest(message)
        if suggestion:
            lines.append(suggestion)
        lines.append(f"Run '{self.prog} --help' to see every flag.")
        self.exit(EX_USAGE, "\n".join(lines) + "\n")

    def _suggest(self, message: str) -> str | None:
        """``Did you mean --model_name?`` for the first unknown flag close to a known one."""
        if not message.startswith("unrecognized arguments:"):
            return None
        known = [flag for action in self._actions for flag in action.option_strings]
        for word in message.removeprefix("unrecognized arguments:").split():
            if not word.startswith("-"):
                continue
            flag = word.split("=", 1)[0]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            if close:
                return f"Did you mean {close[0]}?"
        return None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with OVMS's flags."""
    parser = _Parser(
        prog="ovserve",
        description="Serve OpenVINO models over the TF Serving and KServe v2 APIs (OVMS's flags).",
    )
    parser.add_argument("--version", action="version", version=f"ovserve {__version__}")
    server = parser.add_argument_group("server")
    server.add_argument("--port", type=int, default=0, help="gRPC port (0: gRPC off)")
    server.add_argument("--rest_port", type=int, default=0, help="REST port (0: REST off)")
    server.add_argument("--grpc_bind_address", default="0.0.0.0", help="gRPC bind address(es)")
    server.add_argument("--rest_bind_address", default="0.0.0.0", help="REST bind address(es)")
    server.add_argument("--grpc_workers", type=int, default=1, help="gRPC server workers")
    server.add_argument("--rest_workers", type=int, default=None, help="REST workers")
    server.add_argument(
        "--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="log level"
    )
    server.add_argument("--log_path", type=Path, default=None, help="write logs to this file")
    server.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between checks for new versions and config changes (0: off)",
    )
    server.add_argument("--metrics_enable", action="store_true", help="serve /metrics")
    server.add_argument("--metrics_list", default="", help="comma-separated metric names")
    server.add_argument("--config_path", type=Path, default=None, help="config.json path")
    server.add_argument(
        "--max_request_size",
        type=int,
        default=DEFAULT_MAX_GRPC_MESSAGE_BYTES,
        help="largest gRPC message and REST body in bytes (default 1 GiB, as OVMS)",
    )
    _add_limits_and_tls_flags(parser)
    model = parser.add_argument_group("model (single-model mode)")
    model.add_argument("--model_name", default=None, help="name clients use")
    model.add_argument(
        "--model_path",
        default=None,
        help="folder of version folders, a model file, or s3://, gs://, az://, azfs:// URL",
    )
    model.add_argument(
        "--shape",
        default=None,
        help='"(1,3,-1,-1)", "(1,3,200:500,200:500)", JSON {"input":"(...)"} or auto',
    )
    model.add_argument("--batch_size", default=None, help="N, -1, N:M or auto")
    model.add_argument("--layout", default=None, help='"NHWC:NCHW" or JSON per input')
    model.add_argument(
        "--model_version_policy", default=None, help='JSON, e.g. {"latest":{"num_versions":1}}'
    )
    model.add_argument("--nireq", type=int, default=0, help="infer requests (0: optimal)")
    model.add_argument("--target_device", default="CPU", help="OpenVINO device")
    model.add_argument("--plugin_config", default=None, help='JSON, e.g. {"NUM_STREAMS":"1"}')
    model.add_argument("--cache_dir", type=Path, default=None, help="OpenVINO model cache folder")
    _add_preprocessing_flags(model)
    _add_variant_flags(parser)
    _add_throughput_flags(parser)
    return parser


PREPROCESSING_FLAGS = ("mean", "scale", "color_format", "precision")


def _add_preprocessing_flags(group: argparse._ArgumentGroup) -> None:
    """OVMS's --mean, --scale, --color_format, --precision (each needs --layout)."""
    group.add_argument(
        "--mean", default=None, help='Resets model mean, e.g. "[123.675,116.28,103.53]"'
    )
    group.add_argument(
        "--scale", default=None, help='Resets model scale, e.g. "[58.395,57.12,57.375]"'
    )
    group.add_argument(
        "--color_format",
        default=None,
        help="Resets model color format. It should be in format "
        "<TARGET_COLOR_FORMAT>:<SOURCE_COLOR_FORMAT> e.g. BGR:RGB (the client sends the source)",
    )
    group.add_argument(
        "--precision",
        default=None,
        help="Resets model precision: <CLIENT>:<CONVERTED>, e.g. uint8:fp32 (the client sends "
        "the first)",
    )


def _preprocessing_from_args(args: argparse.Namespace) -> Preprocessing:
    return parse_preprocessing(args.mean, args.scale, args.color_format, args.precision)


def _add_variant_flags(parser: argparse.ArgumentParser) -> None:
    """Static variants for repeated shapes and idle memory release (config.json: same keys)."""
    group = parser.add_argument_group("shape variants and memory (dynamic models)")
    group.add_argument(
        "--max_shape_variants",
        type=int,
        default=None,
        help=f"static compilations kept for repeated request shapes, LRU (default "
        f"{DEFAULT_MAX_SHAPE_VARIANTS}; 0: off)",
    )
    group.add_argument(
        "--shape_variant_threshold",
        type=int,
        default=None,
        help=f"requests of one shape within the window that earn it a variant (default "
        f"{DEFAULT_SHAPE_VARIANT_THRESHOLD})",
    )
    group.add_argument(
        "--shape_variant_window_seconds",
        type=float,
        default=None,
        help=f"the window (default {DEFAULT_SHAPE_VARIANT_WINDOW_SECONDS:g})",
    )
    group.add_argument(
        "--idle_memory_release_seconds",
        type=float,
        default=None,
        help=f"give memory back after a model is idle this long (default "
        f"{DEFAULT_IDLE_MEMORY_RELEASE_SECONDS:g}; 0: never)",
    )


def _variants_from_args(args: argparse.Namespace) -> VariantConfig:
    values = {key: getattr(args, key) for key in VARIANT_KEYS}
    if args.config_path is not None and any(value is not None for value in values.values()):
        raise ConfigError("Model parameters in CLI are exclusive with the config file")
    return parse_variant_config(values)


def _add_throughput_flags(parser: argparse.ArgumentParser) -> None:
    """Dynamic batching defaults (every model; config.json entries may override them)."""
    group = parser.add_argument_group("throughput (ovserve's own)")
    group.add_argument(
        "--dynamic_batching",
        choices=tuple(MODES),
        default="auto",
        help="batch concurrent same-shape requests: auto (where every input and output has a "
        "dynamic batch dimension), on (whenever the inputs do), off",
    )
    group.add_argument(
        "--max_batch_size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="largest batch formed, in rows (default %(default)s)",
    )
    group.add_argument(
        "--max_queue_delay_microseconds",
        type=int,
        default=0,
        help="how long a request may wait for others to batch with (default 0: never waits)",
    )
    group.add_argument("--worker_slot", type=WorkerSlot.parse, default=None, help=argparse.SUPPRESS)


def _worker_count(args: argparse.Namespace) -> int:
    """Serving processes: ``--grpc_workers``, or ``--rest_workers`` capped at the core count.

    Every worker serves both ports. OVMS's ``--rest_workers`` counts threads (it may be set
    far above the core count); as processes, more than one per core only costs memory.
    """
    cores = os.cpu_count() or 1
    rest: int = min(args.rest_workers, cores) if args.rest_workers else 1
    grpc: int = args.grpc_workers
    return max(grpc, rest)


def _name_worker_in_logs(index: int) -> None:
    """Prefix a worker's log records with ``[worker N]``: all workers share the parent's log."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"[%(asctime)s][%(levelname)s][worker {index}][%(name)s] %(message)s")
        )


def _throughput_from_args(args: argparse.Namespace) -> BatchingConfig:
    check_limits(args.max_batch_size, args.max_queue_delay_microseconds)
    return BatchingConfig(
        MODES[args.dynamic_batching], args.max_batch_size, args.max_queue_delay_microseconds
    )


def parse_args(argv: Sequence[str] | None = None) -> ServerConfig:
    """Parse argv into a ServerConfig; raise ConfigError with OVMS's texts."""
    args = build_parser().parse_args(argv)
    require_layout({flag: getattr(args, flag) for flag in PREPROCESSING_FLAGS}, args.layout)
    _check_server_flags(args)
    variants = _variants_from_args(args)
    models: tuple[ModelConfig, ...] = ()
    config_file: ConfigFile | None = None
    if args.model_path is not None:
        models = (replace(_model_from_flags(args), variants=variants),)
    metrics_enable = args.metrics_enable
    metrics_list = tuple(name.strip() for name in args.metrics_list.split(",") if name.strip())
    if args.config_path is not None:
        config_file = read_config_file(
            args.config_path.expanduser().resolve(), cache_dir=args.cache_dir
        )
        models = config_file.models
        if config_file.metrics is not None:
            metrics_enable, metrics_list = _metrics_from_file(args, config_file)
    return ServerConfig(
        port=args.port,
        rest_port=args.rest_port,
        grpc_bind_address=args.grpc_bind_address,
        rest_bind_address=args.rest_bind_address,
        grpc_workers=args.grpc_workers,
        rest_workers=args.rest_workers,
        log_level=args.log_level,
        log_path=args.log_path,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        metrics_enable=metrics_enable,
        metrics_list=metrics_list,
        config_path=args.config_path,
        models=models,
        config_file=config_file,
        cache_dir=args.cache_dir,
        max_grpc_message_bytes=args.max_request_size,
        max_rest_body_bytes=args.max_request_size,
        **_limits_and_tls_from_args(args),
        batching=_throughput_from_args(args),
        workers=_worker_count(args),
        worker_slot=args.worker_slot,
    )


def _check_server_flags(args: argparse.Namespace) -> None:
    if args.config_path is not None:
        if args.model_name is not None or args.model_path is not None:
            raise ConfigError("Use either config_path or model_path with model_name")
        if any(getattr(args, flag) not in (None, 0, "CPU") for flag in MODEL_FLAGS):
            raise ConfigError("Model parameters in CLI are exclusive with the config file")
    elif args.model_name is None or args.model_path is None:
        raise ConfigError("Use config_path or model_path with model_name")
    else:
        check_model_name(args.model_name)
    if args.port == 0 and args.rest_port == 0:
        raise ConfigError("port and rest_port cannot both be unset")
    if args.port == args.rest_port:
        raise ConfigError("port and rest_port cannot have the same values")
    for flag in ("port", "rest_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"{flag} number out of range: {value}")
    if args.metrics_enable and args.rest_port == 0:
        raise ConfigError("rest_port setting is missing, metrics are enabled on rest port")
    if args.metrics_list and not args.metrics_enable:
        raise ConfigError("metrics_list is set but metrics are not enabled: add --metrics_enable")
    cores = os.cpu_count() or 1
    if not 1 <= args.grpc_workers <= cores:
        raise ConfigError(f"grpc_workers count should be from 1 to CPU core count : {cores}")
    if args.rest_workers is not None:
        if args.rest_port == 0:
            raise ConfigError("rest_workers is set but rest_port is not")
        if not 2 <= args.rest_workers <= 10000:
            raise ConfigError("rest_workers count should be from 2 to 10000")
    if args.nireq < 0 or args.nireq > 100000:
        raise ConfigError(f"nireq should be from 0 to 100000, got {args.nireq}")
    if args.file_system_poll_wait_seconds < 0:
        raise ConfigError("file_system_poll_wait_seconds cannot be negative")
    if args.max_request_size <= 0:
        raise ConfigError("max_request_size must be positive")


def _add_limits_and_tls_flags(parser: argparse.ArgumentParser) -> None:
    limits = parser.add_argument_group("connection limits and TLS")
    limits.add_argument(
        "--rest_header_timeout_seconds",
        type=float,
        default=30.0,
        help="a request's headers must arrive within this time, else 408 (default 30)",
    )
    limits.add_argument(
        "--rest_body_timeout_seconds",
        type=float,
        default=30.0,
        help="longest silence while a request body arrives, else 408 (default 30)",
    )
    limits.add_argument(
        "--rest_keep_alive_timeout_seconds",
        type=float,
        default=60.0,
        help="idle keep-alive connections close after this time (default 60)",
    )
    limits.add_argument(
        "--rest_max_connections",
        type=int,
        default=0,
        help="open HTTP connections; at the cap the oldest idle or stalled one is closed, or a "
        "new one gets 503 (default 0: half the open-file limit, e.g. 512 of 1024)",
    )
    limits.add_argument(
        "--grpc_max_connections",
        type=int,
        default=0,
        help="open gRPC connections beyond which new ones are refused "
        "(default 0: a quarter of the open-file limit, e.g. 256 of 1024)",
    )
    limits.add_argument(
        "--grpc_stack",
        choices=GRPC_STACKS,
        default="native",
        help="the gRPC transport: native (HTTP/2 on the event loop; default, the faster) or "
        "grpcio (grpc.aio, gRPC's C core)",
    )
    limits.add_argument(
        "--rest_write_buffer_bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="unsent reply bytes on one connection above which its requests are no longer "
        "read (default 4 MiB)",
    )
    limits.add_argument(
        "--rest_memory_quota",
        type=int,
        default=64 * 1024 * 1024,
        help="request body bytes (REST) and request message bytes (gRPC, native stack) received "
        "and decoded at once, both together; more wait in line, then 503 / RESOURCE_EXHAUSTED "
        "(default 64 MiB, 0: unlimited)",
    )
    limits.add_argument("--tls_cert", type=Path, default=None, help="PEM certificate (chain)")
    limits.add_argument("--tls_key", type=Path, default=None, help="PEM private key")
    limits.add_argument(
        "--tls_client_ca",
        type=Path,
        default=None,
        help="PEM CA: clients must present a certificate signed by it (mutual TLS)",
    )


def _limits_and_tls_from_args(args: argparse.Namespace) -> dict[str, Any]:
    for flag in (
        "rest_header_timeout_seconds",
        "rest_body_timeout_seconds",
        "rest_keep_alive_timeout_seconds",
    ):
        if not getattr(args, flag) > 0:
            raise ConfigError(f"{flag} must be positive")
    for flag in ("rest_max_connections", "grpc_max_connections", "rest_memory_quota"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"{flag} cannot be negative")
    if args.rest_write_buffer_bytes < 1024:
        raise ConfigError("rest_write_buffer_bytes must be at least 1024")
    return {
        "rest_header_timeout_seconds": args.rest_header_timeout_seconds,
        "rest_body_timeout_seconds": args.rest_body_timeout_seconds,
        "rest_keep_alive_timeout_seconds": args.rest_keep_alive_timeout_seconds,
        "rest_max_connections": args.rest_max_connections,
        "grpc_max_connections": args.grpc_max_connections,
        "grpc_stack": args.grpc_stack,
        "rest_write_buffer_bytes": args.rest_write_buffer_bytes,
        "rest_memory_quota": args.rest_memory_quota,
        "tls": read_tls(args.tls_cert, args.tls_key, args.tls_client_ca),
    }


def _metrics_from_file(
    args: argparse.Namespace, config_file: ConfigFile
) -> tuple[bool, tuple[str, ...]]:
    """config.json ``monitoring.metrics`` wins over the metrics flags, as it is the later word."""
    assert config_file.metrics is not None
    if args.metrics_enable or args.metrics_list:
        log.warning(
            "monitoring.metrics in %s overrides --metrics_enable/--metrics_list", args.config_path
        )
    if config_file.metrics.enable and args.rest_port == 0:
        raise ConfigError("rest_port setting is missing, metrics are enabled on rest port")
    return config_file.metrics.enable, config_file.metrics.metrics_list


def _model_from_flags(args: argparse.Namespace) -> ModelConfig:
    shape = parse_shape_param(args.shape) if args.shape is not None else {}
    batch_size = parse_batch_size(args.batch_size) if args.batch_size is not None else None
    if shape and batch_size is not None:
        log.warning(
            "Both shape and batch size have been defined. Batch size parameter will be ignored."
        )
        batch_size = None
    return ModelConfig(
        name=args.model_name,
        base_path=parse_model_path(args.model_path),
        shape=shape,
        batch_size=batch_size,
        layout=parse_layout_param(args.layout) if args.layout is not None else {},
        version_policy=(
            parse_version_policy(args.model_version_policy)
            if args.model_version_policy is not None
            else DEFAULT_POLICY
        ),
        nireq=args.nireq,
        target_device=args.target_device,
        plugin_config=parse_plugin_config(args.plugin_config),
        cache_dir=args.cache_dir,
        preprocessing=_preprocessing_from_args(args),
    )


def configure_logging(level: str, path: Path | None = None) -> None:
    """Readable one-line records on stderr (or a file)."""
    numeric = logging.DEBUG if level in ("TRACE", "DEBUG") else getattr(logging, level)
    handler: logging.Handler = (
        logging.FileHandler(path) if path is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s][%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ovserve`` command."""
    configure_logging("INFO")
    try:
        config = parse_args(argv)
    except PreprocessingValueError as error:
        print(error.text, file=sys.stderr)
        return 1  # OVMS finds these when its model manager starts: exit 1, not EX_USAGE
    except ConfigError as error:
        print(error.text, file=sys.stderr)
        return EX_USAGE
    configure_logging(config.log_level, config.log_path)
    # gRPC core logs each failed TLS handshake (a plaintext or unauthenticated client) at
    # INFO on stderr: a line per attempt that any client can cause. Errors only, unless the
    # user asks for more.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if config.worker_slot is not None:
        _name_worker_in_logs(config.worker_slot.index)
    if config.workers > 1 and config.worker_slot is None:
        from ovserve.workers.supervisor import run_supervisor

        return run_supervisor(sys.argv[1:] if argv is None else argv, config.workers)
    from ovserve.server import run_server

    return run_server(config)


if __name__ == "__main__":
    raise SystemExit(main())
