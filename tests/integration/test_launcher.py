"""The launcher itself: a port taken between picking it and the server binding it is survived."""

from __future__ import annotations

from pathlib import Path

import pytest

import _server
from _models import add_mul_model, save_ir
from _server import ServerProcess, listening_socket


def test_a_picked_port_taken_before_the_bind_gets_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_ir(add_mul_model(), tmp_path / "m")
    real_free_port = _server.free_port
    with listening_socket() as taken:
        picks = iter([taken])
        monkeypatch.setattr(_server, "free_port", lambda: next(picks, None) or real_free_port())
        server = ServerProcess(
            ["--model_name", "m", "--model_path", str(tmp_path / "m")], log_dir=tmp_path
        )
        assert server.grpc_port == taken
        with server:
            assert server.port_retries == 1
            assert server.grpc_port != taken
            assert _server.grpc_server_ready(server.grpc_target)
        assert server.returncode == 0
        assert f":{taken}" in server.log_text()


def test_a_port_the_test_named_is_never_changed(tmp_path: Path) -> None:
    save_ir(add_mul_model(), tmp_path / "m")
    with listening_socket() as taken:
        server = _server.run_to_exit(
            ["--model_name", "m", "--model_path", str(tmp_path / "m")],
            log_dir=tmp_path,
            grpc_port=taken,
        )
    assert server.returncode != 0
    assert (server.grpc_port, server.port_retries) == (taken, 0)
