"""Server options that had no test: ``--log_path``, bind-address lists (and IPv6), ``--cache_dir``.

- ``--log_path``: the log records go to the file, in the documented one-line format, filtered
  by ``--log_level``, and not to the console.
- ``--grpc_bind_address`` / ``--rest_bind_address`` with a comma list: the server answers on
  every address of the list (127.0.0.1 and 127.0.0.2 are both loopback on Linux; ``::1`` when
  this machine has IPv6, else the opt-out ``no-ipv6`` is needed to skip).
- ``--cache_dir``: the second start of the same model is a cache hit, i.e. OpenVINO's cache
  files are read, not written again (same names, sizes, contents and modification times).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton

from _models import save_ir, scale_model
from _server import ServerPool, ServerProcess, free_port, run_to_exit
from _skips import unavailable

LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[(DEBUG|INFO|WARNING|ERROR)\]\[[\w.]+\] "
)


@pytest.fixture
def model(tmp_path: Path) -> list[str]:
    save_ir(scale_model((1, 3)), tmp_path / "m")
    return ["--model_name", "m", "--model_path", str(tmp_path / "m")]


def infer(target: str) -> list[list[float]]:
    client = triton.InferenceServerClient(target)
    try:
        tensor = triton.InferInput("data", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3]], np.float32))
        return client.infer("m", [tensor]).as_numpy("out").tolist()  # type: ignore[no-any-return]
    finally:
        client.close()


# --- --log_path --------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["DEBUG", "WARNING"])
def test_log_path_receives_the_log(
    server_factory: ServerPool, model: list[str], tmp_path: Path, level: str
) -> None:
    log_file = tmp_path / "server.log"
    server = server_factory.start([*model, "--log_path", str(log_file), "--log_level", level])
    assert infer(server.grpc_target) == [[2, 4, 6]]
    assert server.stop() == 0
    lines = log_file.read_text().splitlines()
    console = server.log_text()
    text = "\n".join(lines)
    if level == "WARNING":
        assert "ovserve is ready" not in text + console  # INFO records are filtered out
        return
    assert lines, "nothing was logged to --log_path"
    assert LINE.match(lines[0]), lines[0]
    for expected in ("ovserve is ready", "Shutting down", "Stopped"):
        (line,) = [line for line in lines if expected in line]
        assert LINE.match(line), line
    assert [line for line in lines if LINE.match(line) and "][DEBUG][" in line]
    for record in ("ovserve is ready", "Stopped"):
        assert record not in console  # the records went to the file, not to the console


# --- bind-address lists ------------------------------------------------------------------------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_bind_address_lists(server_factory: ServerPool, model: list[str], family: str) -> None:
    second = "127.0.0.2" if family == "ipv4" else "::1"
    if family == "ipv6" and not ipv6_loopback():
        unavailable("no-ipv6", "this machine cannot bind ::1")
    addresses = f"127.0.0.1,{second}"
    server: ServerProcess = server_factory.start(
        [*model, "--grpc_bind_address", addresses, "--rest_bind_address", addresses], rest=True
    )
    host = f"[{second}]" if ":" in second else second
    assert server.rest_port is not None
    for target in (f"127.0.0.1:{server.grpc_port}", f"{host}:{server.grpc_port}"):
        assert infer(target) == [[2, 4, 6]], target
    for base in (f"http://127.0.0.1:{server.rest_port}", f"http://{host}:{server.rest_port}"):
        assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200, base
    # An address not in the list is not served.
    other = "127.0.0.3"
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((other, server.rest_port)) != 0


def test_a_port_of_the_list_in_use_fails_the_start(model: list[str], tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.2", port))
        holder.listen()
        server = run_to_exit(
            [*model, "--grpc_bind_address", "127.0.0.1,127.0.0.2"],
            log_dir=tmp_path,
            grpc_port=port,
        )
    assert server.returncode != 0
    assert str(port) in server.log_text()


# --- --cache_dir -------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            path.read_bytes(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_cache_dir_is_hit_on_the_second_start(
    server_factory: ServerPool, model: list[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = [*model, "--cache_dir", str(cache)]
    first = server_factory.start(args)
    assert infer(first.grpc_target) == [[2, 4, 6]]
    assert first.stop() == 0
    written = snapshot(cache)
    assert written, "the first start wrote nothing to --cache_dir"
    second = server_factory.start(args)
    assert infer(second.grpc_target) == [[2, 4, 6]]
    assert second.stop() == 0
    assert snapshot(cache) == written, "the second start compiled again instead of using the cache"
