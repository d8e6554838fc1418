"""Start-up errors: a clear message, a non-zero exit, nothing left listening."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from _models import add_mul_model, conv_onnx, save_ir, save_onnx, scale_model
from _server import ServerPool, ServerProcess, listening_socket, port_is_open, run_to_exit

EX_USAGE = 64
Builder = Callable[[Path], None]


def assert_failed_cleanly(server: ServerProcess, message: str) -> None:
    """Non-zero exit, the message in the log (no traceback), and no port left open."""
    log = server.log_text()
    assert server.returncode not in (None, 0), log
    assert message in log
    assert "Traceback" not in log
    for port in (server.grpc_port, server.rest_port):
        if port is not None:
            assert not port_is_open(port)


def start(base: Path, tmp_path: Path, *extra: str, **kwargs: bool | int | None) -> ServerProcess:
    args = ["--model_name", "m", "--model_path", str(base), *extra]
    return run_to_exit(args, log_dir=tmp_path / "logs", **kwargs)  # type: ignore[arg-type]


# --- the model repository ----------------------------------------------------------------------


def no_version_folder(base: Path) -> None:
    (base / "models").mkdir(parents=True)
    (base / "0").mkdir()
    (base / "latest").mkdir()


def empty_version_folder(base: Path) -> None:
    (base / "1").mkdir(parents=True)
    (base / "1" / "notes.txt").write_text("no model here")


def two_models(base: Path) -> None:
    save_ir(scale_model(), base)
    save_onnx(conv_onnx(), base)


def corrupt_onnx(base: Path) -> None:
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.onnx").write_bytes(b"this is not an onnx file\x00\x01")


def corrupt_ir(base: Path) -> None:
    (base / "1").mkdir(parents=True)
    (base / "1" / "model.xml").write_text("<net><layers><broken")
    (base / "1" / "model.bin").write_bytes(b"\x00" * 16)


def ir_without_weights(base: Path) -> None:
    save_ir(scale_model(), base).with_suffix(".bin").unlink()


REPOSITORY_ERRORS: dict[str, tuple[Builder, str]] = {
    "no numbered version folder": (no_version_folder, "No version found for model m in "),
    "version folder without a model": (empty_version_folder, "No model file in "),
    "version folder with two models": (two_models, "More than one model file in "),
    "corrupt onnx": (
        corrupt_onnx,
        "Model m: cannot read model file model.onnx: the file is corrupt or not an "
        "OpenVINO IR/ONNX model",
    ),
    "corrupt IR": (
        corrupt_ir,
        "Model m: cannot read model file model.xml: the file is corrupt or not an "
        "OpenVINO IR/ONNX model",
    ),
    "IR without weights": (ir_without_weights, "has no weights file model.bin"),
}


@pytest.mark.parametrize("case", list(REPOSITORY_ERRORS))
def test_repository_errors(tmp_path: Path, case: str) -> None:
    build, message = REPOSITORY_ERRORS[case]
    base = tmp_path / "m"
    base.mkdir()
    build(base)
    assert_failed_cleanly(start(base, tmp_path), message)


def test_model_path_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    server = start(missing, tmp_path)
    assert_failed_cleanly(server, f"Model path {missing} does not exist")


def test_model_path_is_a_file(tmp_path: Path) -> None:
    """A model file is served as version 1 (KServe's flat layout); any other file is refused."""
    path = tmp_path / "model.txt"
    path.write_bytes(b"")
    assert_failed_cleanly(start(path, tmp_path), "is neither a directory nor a model file")


# --- shapes that do not fit the model ----------------------------------------------------------


@pytest.fixture
def add_mul_repo(tmp_path: Path) -> Path:
    base = tmp_path / "add_mul"
    save_ir(add_mul_model(), base)
    return base


def test_anonymous_shape_on_a_multi_input_model(add_mul_repo: Path, tmp_path: Path) -> None:
    server = start(add_mul_repo, tmp_path, "--shape", "(1,4)")
    assert_failed_cleanly(
        server, "Anonymous fixed shape is invalid for models with multiple inputs"
    )


def test_shape_for_an_unknown_input(add_mul_repo: Path, tmp_path: Path) -> None:
    server = start(add_mul_repo, tmp_path, "--shape", '{"nope": "(1,4)"}')
    assert_failed_cleanly(server, "Config shape - nope not found in model")


def test_shape_the_model_cannot_take(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "conv")
    server = start(tmp_path / "conv", tmp_path, "--shape", "(1,3,224)")
    assert_failed_cleanly(server, "OV does not support reshaping model: m with provided shape")


# --- flags, through the real process -----------------------------------------------------------


def test_cli_error_exits_64_before_loading(tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    server = start(tmp_path / "m", tmp_path, "--shape", "(1,3")
    assert server.returncode == EX_USAGE
    assert server.log_text().strip().startswith("Couldn't parse shape parameter")


def test_no_port_exits_64(tmp_path: Path) -> None:
    server = start(tmp_path, tmp_path, grpc=False)
    assert server.returncode == EX_USAGE
    assert server.log_text().strip() == "port and rest_port cannot both be unset"


# --- ports -------------------------------------------------------------------------------------


def assert_port_in_use(server: ServerProcess, api: str, port: int) -> None:
    """Non-zero exit; the log is the one line naming the port; no model loaded before it."""
    log = server.log_text()
    assert server.returncode not in (None, 0), log
    lines = log.strip().splitlines()
    assert len(lines) == 1, log  # no gRPC C-core lines, no load lines, said once
    assert f"{api} port {port} is already in use" in lines[0]
    assert "Loaded model" not in log


def test_grpc_port_in_use(tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    with listening_socket() as port:
        server = start(tmp_path / "m", tmp_path, grpc_port=port)
        assert_port_in_use(server, "gRPC", port)


def test_rest_port_in_use_closes_grpc_too(tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    with listening_socket() as port:
        server = start(tmp_path / "m", tmp_path, rest=True, rest_port=port)
        assert_port_in_use(server, "REST", port)
        assert server.grpc_port is not None
        assert not port_is_open(server.grpc_port)


def test_a_second_server_on_the_same_port_fails(server_factory: ServerPool, tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    args = ["--model_name", "m", "--model_path", str(tmp_path / "m")]
    first = server_factory.start(args)
    assert first.grpc_port is not None
    second = run_to_exit(args, log_dir=tmp_path / "second", grpc_port=first.grpc_port)
    assert_port_in_use(second, "gRPC", first.grpc_port)
    assert first.is_running()


# --- logs --------------------------------------------------------------------------------------


def test_start_up_log_names_model_version_shapes_device_and_nireq(
    range_conv_server: ServerProcess,
) -> None:
    lines = [line for line in range_conv_server.log_text().splitlines() if "Loaded model" in line]
    assert len(lines) == 1
    (line,) = lines
    for part in ("conv version 1", "on CPU", "nireq", "data FP32 (1,3,[200~500],[200~500])"):
        assert part in line


def test_log_level_is_honoured(server_factory: ServerPool, tmp_path: Path) -> None:
    save_ir(scale_model(), tmp_path / "m")
    quiet = server_factory.start(
        ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--log_level", "WARNING"]
    )
    assert quiet.stop() == 0
    assert "[INFO]" not in quiet.log_text()
    verbose = server_factory.start(
        ["--model_name", "m", "--model_path", str(tmp_path / "m"), "--log_level", "DEBUG"]
    )
    assert verbose.stop() == 0
    assert "[DEBUG]" in verbose.log_text()
    assert "Loaded model m version 1" in verbose.log_text()
