"""Start-up as a person meets it: one clear message, no third-party noise, through the real
process (a corrupt model file, a device that is not there, a shape of the wrong rank)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _models import conv_onnx, save_onnx
from _server import ServerProcess, run_to_exit

OUR_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[[A-Z]+\]\[[\w.]+\] ")
"""Every line ovserve itself prints at start-up (cli.configure_logging's format)."""


def start(base: Path, tmp_path: Path, *extra: str) -> ServerProcess:
    args = ["--model_name", "m", "--model_path", str(base), *extra]
    return run_to_exit(args, log_dir=tmp_path / "logs")


def only_our_lines(server: ServerProcess) -> list[str]:
    lines = server.log_text().splitlines()
    strangers = [line for line in lines if not OUR_LINE.match(line)]
    assert not strangers, server.log_text()
    return lines


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.onnx", b"this is not an onnx file\x00\x01"),
        ("model.onnx", b"\x08\x07\x12\x04half"),  # a truncated protobuf
        ("model.xml", b"<net name='x'><layers><layer id='0'"),
    ],
)
def test_corrupt_model_prints_no_parser_noise(tmp_path: Path, name: str, content: bytes) -> None:
    """OpenVINO's TensorFlow front-end prints absl parser errors for a text file; not here."""
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / name).write_bytes(content)
    if name.endswith(".xml"):
        (tmp_path / "m" / "1" / "model.bin").write_bytes(b"\x00" * 16)
    server = start(tmp_path / "m", tmp_path)
    assert server.returncode == 1
    lines = only_our_lines(server)
    assert any(f"cannot read model file {name}: the file is corrupt" in line for line in lines)


def test_unknown_device_lists_the_devices_there_are(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "m")
    server = start(tmp_path / "m", tmp_path, "--target_device", "NPU")
    assert server.returncode == 1
    log = "\n".join(only_our_lines(server))
    assert "Model m: target device NPU is not available; available devices: CPU" in log
    assert ".so" not in log


def test_empty_device(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "m")
    server = start(tmp_path / "m", tmp_path, "--target_device", "")
    assert server.returncode == 1
    assert "target_device is empty; available devices: CPU" in server.log_text()


def test_shape_of_the_wrong_rank(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "m")
    server = start(tmp_path / "m", tmp_path, "--shape", "(1,3,224)")
    assert server.returncode == 1
    log = "\n".join(only_our_lines(server))
    assert (
        "OV does not support reshaping model: m with provided shape (1,3,224): input data has "
        "4 dimensions (1,3,-1,-1), the shape given has 3"
    ) in log
    for internal in ("Parameter", "opset", "filters", "data batch"):
        assert internal not in log


def test_shape_of_the_wrong_rank_in_the_client_layout(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "m")
    server = start(tmp_path / "m", tmp_path, "--layout", "NHWC:NCHW", "--shape", "(1,224,224)")
    assert server.returncode == 1
    log = "\n".join(only_our_lines(server))
    assert "input data has 4 dimensions (1,-1,-1,3), the shape given has 3" in log
    assert "Layout is not compatible" not in log


def test_mistyped_flag_is_three_lines_with_a_suggestion(tmp_path: Path) -> None:
    save_onnx(conv_onnx(), tmp_path / "m")
    server = run_to_exit(
        ["--modle_name", "m", "--model_path", str(tmp_path / "m")], log_dir=tmp_path / "logs"
    )
    assert server.returncode == 64
    lines = server.log_text().splitlines()
    assert lines == [
        "ovserve: error: unrecognized arguments: --modle_name m",
        "Did you mean --model_name?",
        "Run 'ovserve --help' to see every flag.",
    ]
