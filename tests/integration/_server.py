"""Run ovserve as a black box: a ``python -m ovserve`` subprocess on free ports.

The one server launcher of the integration tests. The server is started with
``sys.executable -m ovserve``, its stdout and stderr go to a log file, readiness is polled (a
TCP connect, then KServe ``ServerReady`` over gRPC, or ``GET /v2/health/ready`` when only REST
is on) and it is stopped with SIGTERM.

Ports: a free port is found by binding port 0 and releasing it, so another process (tests run
in parallel on this machine) may take it before the server binds. When the server then fails
to start because one of the ports *this launcher picked* is in use, the launcher picks new ones
and starts it again (``PORT_ATTEMPTS`` times); ports a test names explicitly are never changed.

    with ServerProcess(["--model_name", "m", "--model_path", str(path)], log_dir=tmp) as server:
        client = tritonclient.grpc.InferenceServerClient(server.grpc_target)
        ...
    # leaving the block sends SIGTERM and asserts exit status 0 (unless the block raised)

This module never imports ovserve: the integration tier treats the server as a black box, and
ovserve's generated protobuf stubs cannot share a process with tritonclient/ovmsclient.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

HOST = "127.0.0.1"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
"""Plugin config for exact float comparisons (this CPU runs bf16 by default)."""
F32_FLAGS = ("--plugin_config", json.dumps(F32))
START_TIMEOUT = 120.0
"""Start-up can take long on a shared, loaded machine (8 helpers on 2 cores measured load 15)."""
STOP_TIMEOUT = 45.0
POLL_SECONDS = 0.05
PORT_ATTEMPTS = 4
"""Starts tried when a port the launcher picked was taken before the server bound it."""

_running: list[ServerProcess] = []


def free_port() -> int:
    """A port nothing listens on now (bound to 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` (every 5 ms) until it holds; AssertionError naming ``what`` if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def port_is_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def grpc_server_ready(target: str, timeout: float = 2.0) -> bool:
    """KServe ``ServerReady`` over gRPC; False while it cannot be reached."""
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            return bool(stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout).ready)
        except grpc.RpcError:
            return False


def rest_server_ready(port: int, timeout: float = 2.0) -> bool:
    """KServe REST ``GET /v2/health/ready`` answers 200."""
    url = f"http://{HOST}:{port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class ServerError(AssertionError):
    """The server did not start, stop or exit as expected; the message includes its log."""


class ServerProcess:
    """One ``ovserve`` process on free ports, with its log captured to a file.

    ``args`` are the model flags (``--model_name``, ``--model_path``, ``--shape``...).
    ``--port`` (and ``--rest_port`` with ``rest=True``) are added, on free ports unless
    ``grpc_port``/``rest_port`` name one; the bind addresses default to 127.0.0.1 unless
    ``args`` set them. The log goes to ``log_file``, or to a new file in ``log_dir``.
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        log_dir: Path | None = None,
        log_file: Path | None = None,
        grpc: bool = True,
        rest: bool = False,
        grpc_port: int | None = None,
        rest_port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self._pick_grpc = grpc and grpc_port is None
        self._pick_rest = rest and rest_port is None
        self.grpc_port: int | None = (grpc_port or free_port()) if grpc else None
        self.rest_port: int | None = (rest_port or free_port()) if rest else None
        if log_file is None:
            assert log_dir is not None, "give log_dir or log_file"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = _unique(log_dir / "ovserve.log")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_file
        self.log_path.touch()
        # PYTHONFAULTHANDLER: a server that hangs is sent SIGABRT, which prints every thread's
        # stack into its log (see wait_ready).
        self._env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1",
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.clients: list[Any] = []
        self.port_retries = 0
        """How often a picked port was taken before the server bound it (and new ones picked)."""

    @property
    def command(self) -> list[str]:
        """The full command line."""
        command = [sys.executable, "-m", "ovserve", *self.args]
        if self.grpc_port is not None:
            command += ["--port", str(self.grpc_port)]
            if "--grpc_bind_address" not in self.args:
                command += ["--grpc_bind_address", HOST]
        if self.rest_port is not None:
            command += ["--rest_port", str(self.rest_port)]
            if "--rest_bind_address" not in self.args:
                command += ["--rest_bind_address", HOST]
        return command

    @property
    def grpc_target(self) -> str:
        """``host:port`` for gRPC clients."""
        assert self.grpc_port is not None, "started without gRPC"
        return f"{HOST}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """``http://host:port`` for REST clients."""
        assert self.rest_port is not None, "started without rest=True"
        return f"http://{HOST}:{self.rest_port}"

    # Names of the former model-management launcher (``_mm_helpers``), kept for its tests.
    @property
    def port(self) -> int:
        """The gRPC port."""
        assert self.grpc_port is not None, "started without gRPC"
        return self.grpc_port

    @property
    def grpc_url(self) -> str:
        """Same as :attr:`grpc_target`."""
        return self.grpc_target

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The ``Popen`` of the server."""
        return self._popen

    def log(self) -> str:
        """Same as :meth:`log_text`."""
        return self.log_text()

    def client(self) -> Any:
        """A tritonclient KServe gRPC client, closed when the server stops."""
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.grpc_target)
        self.clients.append(client)
        return client

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self._popen.pid

    @property
    def _popen(self) -> subprocess.Popen[bytes]:
        assert self._process is not None, "not started"
        return self._process

    def start(self) -> ServerProcess:
        """Spawn the process (does not wait for readiness)."""
        assert self._process is None, "already started"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self._env
            )
        _running.append(self)
        return self

    def log_text(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_running(self) -> bool:
        """True while the process has not exited."""
        return self._process is not None and self._process.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Poll until ready; raise ServerError (with the log) if it exits or times out."""
        deadline = time.monotonic() + timeout
        port = self.grpc_port if self.grpc_port is not None else self.rest_port
        assert port is not None, "neither gRPC nor REST is on"
        while time.monotonic() < deadline:
            if self._exited_within(POLL_SECONDS):
                if self._picked_port_was_taken() and self.port_retries < PORT_ATTEMPTS - 1:
                    self._restart_on_new_ports()
                    port = self.grpc_port if self.grpc_port is not None else self.rest_port
                    assert port is not None
                    continue
                raise ServerError(
                    f"ovserve exited with {self.returncode} before it was ready\n{self._report()}"
                )
            if port_is_open(port) and self._ready():
                return self
        self._dump_stacks()
        self.kill()
        raise ServerError(f"ovserve was not ready within {timeout:.0f} s\n{self._report()}")

    def _dump_stacks(self) -> None:
        """SIGABRT a hung server: faulthandler writes every thread's stack to the log."""
        if self.is_running():
            self._popen.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)

    def _picked_port_was_taken(self) -> bool:
        """The last start failed binding a port this launcher picked (not one the test named)."""
        tail = self.log_text().splitlines()[-5:]
        picked = [
            port
            for port, chosen in (
                (self.grpc_port, self._pick_grpc),
                (self.rest_port, self._pick_rest),
            )
            if chosen and port is not None
        ]
        return any(
            f":{port}" in line and ("in use" in line.lower() or "bind" in line.lower())
            for line in tail
            for port in picked
        )

    def _restart_on_new_ports(self) -> None:
        self.port_retries += 1
        with self.log_path.open("ab") as log:
            log.write(
                f"--- launcher: a picked port was taken; restart {self.port_retries} ---\n".encode()
            )
        if self._pick_grpc:
            self.grpc_port = free_port()
        if self._pick_rest:
            self.rest_port = free_port()
        self._forget()
        self._process = None
        self.returncode = None
        self.start()

    def _ready(self) -> bool:
        if self.grpc_port is not None:
            return grpc_server_ready(self.grpc_target)
        assert self.rest_port is not None
        return rest_server_ready(self.rest_port)

    def _exited_within(self, seconds: float) -> bool:
        try:
            self.returncode = self._popen.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        """Wait for the process to exit on its own; return its status."""
        try:
            self.returncode = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerError(
                f"ovserve did not exit within {timeout:.0f} s\n{self._report()}"
            ) from None
        self._forget()
        return self.returncode

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal without waiting."""
        if self.is_running():
            self._popen.send_signal(signum)

    def stop(self, timeout: float = STOP_TIMEOUT, signum: int = signal.SIGTERM) -> int:
        """SIGTERM (or ``signum``), wait for the exit and return its status (kill on timeout)."""
        if self._process is None:
            raise ServerError("stop() before start()")
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        self.clients.clear()
        if self.returncode is not None:
            return self.returncode
        self.send_signal(signum)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL if still running (clean-up after failures)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._process is not None:
            self.returncode = self._process.returncode
        self._forget()

    def _forget(self) -> None:
        with contextlib.suppress(ValueError):
            _running.remove(self)

    def _report(self) -> str:
        return f"command: {' '.join(self.command)}\n--- log ---\n{self.log_text()}--- end ---"

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.kill()
            return
        status = self.stop()
        if status != 0:
            raise ServerError(f"ovserve exited with {status} after SIGTERM\n{self._report()}")


def run_to_exit(
    args: Sequence[str],
    *,
    log_dir: Path,
    timeout: float = START_TIMEOUT,
    grpc: bool = True,
    rest: bool = False,
    grpc_port: int | None = None,
    rest_port: int | None = None,
) -> ServerProcess:
    """Start a server expected to fail on start-up; return it after it exited."""
    server = ServerProcess(
        args, log_dir=log_dir, grpc=grpc, rest=rest, grpc_port=grpc_port, rest_port=rest_port
    ).start()
    server.wait_exit(timeout)
    return server


def running_servers() -> list[ServerProcess]:
    """Servers started and not yet stopped (for attaching their logs to failure reports)."""
    return list(_running)


def kill_leftovers() -> list[str]:
    """Kill servers a test forgot to stop; return their commands (for a failure message).

    A server that already exited on its own (a start-up failure a test waited for) is not a
    leftover.
    """
    leftovers = [" ".join(server.command) for server in list(_running) if server.is_running()]
    for server in list(_running):
        server.kill()
    return leftovers


@contextlib.contextmanager
def listening_socket(port: int | None = None) -> Iterator[int]:
    """Hold a listening TCP socket on ``port`` (a free one by default); yield the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, port or 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _unique(path: Path) -> Path:
    """``ovserve.log``, else ``ovserve-2.log``... (several servers may share a log dir)."""
    if not path.exists():
        return path
    for index in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{index}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise RuntimeError(f"too many logs in {path.parent}")


class ServerPool:
    """Servers started for one fixture scope; ``close()`` stops them all and checks exit 0."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._servers: list[ServerProcess] = []

    def start(self, args: Sequence[str], **kwargs: Any) -> ServerProcess:
        """Start a server (keywords as :class:`ServerProcess`) and wait until it is ready."""
        server = ServerProcess(args, log_dir=self.log_dir, **kwargs)
        self._servers.append(server)
        server.start()
        try:
            return server.wait_ready()
        except BaseException:
            server.kill()
            raise

    def close(self) -> None:
        """SIGTERM every server still running; raise if any exits non-zero."""
        failures = []
        for server in self._servers:
            if server.returncode is None and server.is_running():
                status = server.stop()
                if status != 0:
                    failures.append(f"exit {status}\n{server._report()}")
            server.kill()
        self._servers.clear()
        if failures:
            raise ServerError("ovserve did not exit 0 on SIGTERM:\n" + "\n".join(failures))
