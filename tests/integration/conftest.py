"""Shared integration fixtures: ovserve processes on free ports and models built in the tests.

Fixtures for everyone:

- ``server_factory`` / ``module_server_factory``: ``start(args, rest=False, ...)`` returns a
  ready :class:`_server.ServerProcess`; all are stopped with SIGTERM at the end of the test /
  module, and each must exit 0.
- Session-wide servers (f32 inference), each serving one model built here:
  ``range_conv_server`` (model ``conv``: ONNX conv ``data`` [1,3,H,W] → ``out``, with
  ``--shape "(1,3,200:500,200:500)"``; ``range_conv_model`` is the file, for references),
  ``add_mul_server`` (``add_mul``: IR ``a``, ``b`` [-1,4] → ``sum``, ``product``) and
  ``dtypes_server`` (``dtypes``: IR ``in_<TYPE>`` [-1,3] → ``out_<TYPE> = x + x``, BOOL ``not
  x``, for every fixed-size KServe datatype).

See ``_server.py`` (process control) and ``_models.py`` (model builders, references).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from _models import add_mul_model, conv_onnx, dtypes_model, save_ir, save_onnx
from _server import F32_FLAGS, ServerPool, ServerProcess, kill_leftovers, running_servers

RANGE_SHAPE = "(1,3,200:500,200:500)"
LOG_TAIL_CHARS = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the tail of every running server's log to the report.

    Newest first: the failing test's own servers (perhaps exited already) lead, before the
    long-lived shared ones, so a truncated CI log still shows them.
    """
    report: pytest.TestReport = yield
    if report.failed:
        for server in reversed(running_servers()):
            tail = server.log_text()[-LOG_TAIL_CHARS:]
            report.sections.append((f"ovserve log (pid {server.pid})", tail))
    return report


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_servers() -> Iterator[None]:
    """Kill any server a test left running, and say so."""
    yield
    leftovers = kill_leftovers()
    assert not leftovers, f"servers left running: {leftovers}"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerPool]:
    """Start servers for one test; each must exit 0 on SIGTERM at teardown."""
    pool = ServerPool(tmp_path / "logs")
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def module_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """Start servers shared by one test module; each must exit 0 on SIGTERM at teardown."""
    pool = ServerPool(tmp_path_factory.mktemp("logs"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def range_conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX conv model with dynamic height and width, as ``<base>/1/model.onnx``."""
    return save_onnx(conv_onnx(), tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="session")
def range_conv_server(range_conv_model: Path, session_servers: ServerPool) -> ServerProcess:
    """``ovserve --model_name conv --shape "(1,3,200:500,200:500)"`` at f32, for the session."""
    args = ["--model_name", "conv", "--model_path", str(range_conv_model.parent.parent)]
    return session_servers.start([*args, "--shape", RANGE_SHAPE, *F32_FLAGS])


@pytest.fixture(scope="session")
def session_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    """Servers shared by the whole session; each must exit 0 on SIGTERM at the end."""
    pool = ServerPool(tmp_path_factory.mktemp("logs"))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def add_mul_server(
    session_servers: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """IR ``a``, ``b`` [-1, 4] → ``sum``, ``product`` (the model's own dynamic dims)."""
    base = tmp_path_factory.mktemp("add_mul")
    save_ir(add_mul_model(), base)
    return session_servers.start(["--model_name", "add_mul", "--model_path", str(base)])


@pytest.fixture(scope="session")
def dtypes_server(
    session_servers: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """IR with one input per KServe datatype (``in_FP32``...) → ``out_FP32 = x + x``..."""
    base = tmp_path_factory.mktemp("dtypes")
    save_ir(dtypes_model(), base)
    return session_servers.start(["--model_name", "dtypes", "--model_path", str(base), *F32_FLAGS])
