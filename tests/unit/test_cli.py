"""The command line: OVMS's flags, start-up error texts and exit status 64."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovserve import cli
from ovserve.config.layout import Layout
from ovserve.config.plugin_config import parse_plugin_config
from ovserve.config.server_config import ServerConfig
from ovserve.config.shape import ANONYMOUS_INPUT, AUTO, Dimension, Shape
from ovserve.config.version_policy import AllVersions, LatestVersions, SpecificVersions

SHAPE_BATCH_WARNING = (
    "Both shape and batch size have been defined. Batch size parameter will be ignored."
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` reconfigures the root logger; put it back for the next test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "1").mkdir()
    return tmp_path


def single(model_dir: Path, *extra: str) -> list[str]:
    return ["--model_name", "m", "--model_path", str(model_dir), "--port", "9000", *extra]


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main``; it must exit 64 (EX_USAGE) and print one error line; return that line."""
    assert cli.main(argv) == 64
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.strip()


# --- OVMS's start-up errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "9000"], "Use config_path or model_path with model_name"),
        (["--model_name", "m", "--port", "9000"], "Use config_path or model_path with model_name"),
        (
            ["--model_path", "/models/m", "--port", "9000"],
            "Use config_path or model_path with model_name",
        ),
        (
            ["--config_path", "c.json", "--model_name", "m", "--port", "9000"],
            "Use either config_path or model_path with model_name",
        ),
        (
            ["--config_path", "c.json", "--model_path", "/m", "--port", "9000"],
            "Use either config_path or model_path with model_name",
        ),
        (
            ["--config_path", "c.json", "--shape", "(1,3)", "--port", "9000"],
            "Model parameters in CLI are exclusive with the config file",
        ),
        (
            ["--config_path", "c.json", "--nireq", "2", "--port", "9000"],
            "Model parameters in CLI are exclusive with the config file",
        ),
        (
            ["--config_path", "c.json", "--target_device", "GPU", "--port", "9000"],
            "Model parameters in CLI are exclusive with the config file",
        ),
        (["--model_name", "m", "--model_path", "/m"], "port and rest_port cannot both be unset"),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "0", "--rest_port", "0"],
            "port and rest_port cannot both be unset",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--rest_port", "9000"],
            "port and rest_port cannot have the same values",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--metrics_enable"],
            "rest_port setting is missing, metrics are enabled on rest port",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "70000"],
            "port number out of range: 70000",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "1", "--rest_port", "-5"],
            "rest_port number out of range: -5",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--grpc_workers", "0"],
            f"grpc_workers count should be from 1 to CPU core count : {os.cpu_count()}",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--rest_workers", "4"],
            "rest_workers is set but rest_port is not",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--rest_port", "9", "--rest_workers", "1"],
            "rest_workers count should be from 2 to 10000",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9000", "--nireq", "100001"],
            "nireq should be from 0 to 100000, got 100001",
        ),
        (
            ["--model_name", "m", "--model_path", "/m", "--port", "9", "--metrics_list", "a"],
            "metrics_list is set but metrics are not enabled: add --metrics_enable",
        ),
    ],
)
def test_server_flag_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fails(argv, capsys) == message


def test_too_many_grpc_workers(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cores = os.cpu_count() or 1
    error = fails(single(model_dir, "--grpc_workers", str(cores + 1)), capsys)
    assert error == f"grpc_workers count should be from 1 to CPU core count : {cores}"


@pytest.mark.parametrize(
    ("extra", "prefix"),
    [
        (["--shape", "(1,3"], "Couldn't parse shape parameter"),
        (["--shape", "1,3,224,224"], "Couldn't parse shape parameter"),
        (["--shape", '{"data": [1,3]}'], "Couldn't parse shape parameter"),
        (["--shape", "(5:2)"], "Couldn't parse shape parameter"),
        (["--batch_size", "0"], "Couldn't parse batch_size parameter"),
        (["--batch_size", "x"], "Couldn't parse batch_size parameter"),
        (["--layout", "NXYZ"], "Couldn't parse layout parameter"),
        (["--model_version_policy", "{latest}"], "Model version policy is not valid JSON"),
        (["--model_version_policy", '{"newest": {}}'], "Unknown model version policy"),
        (["--plugin_config", "{NUM_STREAMS: 1}"], "plugin_config is not valid JSON"),
        (["--plugin_config", '{"A": {"B": 1}}'], "plugin_config must be a JSON object of scalar"),
        (["--plugin_config", "[1]"], "plugin_config must be a JSON object of scalar"),
    ],
)
def test_model_flag_errors(
    model_dir: Path, extra: list[str], prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fails(single(model_dir, *extra), capsys).startswith(prefix)


@pytest.mark.parametrize("extra", [["--port", "abc"], ["--no_such_flag", "1"], ["--nireq", "x"]])
def test_unparsable_flags_exit_64(
    model_dir: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model_name", "m", "--model_path", str(model_dir), *extra]
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code  # type: ignore[assignment]
    assert status == 64


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_exit_0(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main([flag])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert ("--model_name" in out) if flag == "--help" else out.startswith("ovserve ")


def test_help_lists_ovms_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for flag in (
        "--port",
        "--rest_port",
        "--grpc_bind_address",
        "--model_name",
        "--model_path",
        "--shape",
        "--batch_size",
        "--target_device",
        "--plugin_config",
        "--nireq",
        "--model_version_policy",
        "--log_level",
    ):
        assert flag in out


# --- parsed configuration ----------------------------------------------------------------------


def test_defaults(model_dir: Path) -> None:
    config = cli.parse_args(single(model_dir))
    assert (config.port, config.rest_port, config.grpc_bind_address) == (9000, 0, "0.0.0.0")
    assert config.log_level == "INFO"
    (model,) = config.models
    assert model.name == "m"
    assert model.base_path == model_dir.resolve()
    assert model.shape == {}
    assert model.batch_size is None
    assert model.version_policy == LatestVersions(1)
    assert (model.nireq, model.target_device, dict(model.plugin_config)) == (0, "CPU", {})


def test_every_model_flag(model_dir: Path) -> None:
    config = cli.parse_args(
        single(
            model_dir,
            "--rest_port",
            "8000",
            "--shape",
            '{"data": "(1,3,200:500,-1)"}',
            "--layout",
            "NHWC:NCHW",
            "--model_version_policy",
            '{"specific": {"versions": [1, 2]}}',
            "--nireq",
            "4",
            "--target_device",
            "GPU",
            "--plugin_config",
            '{"NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": "f32", "X": 2}',
            "--log_level",
            "debug",
            "--grpc_bind_address",
            "127.0.0.1",
        )
    )
    assert isinstance(config, ServerConfig)
    assert (config.rest_port, config.log_level, config.grpc_bind_address) == (
        8000,
        "DEBUG",
        "127.0.0.1",
    )
    (model,) = config.models
    assert model.shape == {"data": Shape.of(1, 3, Dimension(200, 500), -1)}
    assert model.layout == {ANONYMOUS_INPUT: Layout("NHWC", "NCHW")}
    assert model.version_policy == SpecificVersions(frozenset({1, 2}))
    assert (model.nireq, model.target_device) == (4, "GPU")
    assert dict(model.plugin_config) == {
        "NUM_STREAMS": "1",
        "INFERENCE_PRECISION_HINT": "f32",
        "X": 2,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("-1", Dimension.any()), ("1:8", Dimension(1, 8)), ("4", Dimension.static(4)), ("auto", AUTO)],
)
def test_batch_size(model_dir: Path, value: str, expected: object) -> None:
    (model,) = cli.parse_args(single(model_dir, "--batch_size", value)).models
    assert model.batch_size == expected
    assert model.shape == {}


def test_shape_auto(model_dir: Path) -> None:
    (model,) = cli.parse_args(single(model_dir, "--shape", "auto")).models
    assert model.shape == {ANONYMOUS_INPUT: AUTO}


def test_all_versions_policy(model_dir: Path) -> None:
    (model,) = cli.parse_args(single(model_dir, "--model_version_policy", '{"all": {}}')).models
    assert model.version_policy == AllVersions()


def test_shape_with_batch_size_warns_and_ignores_the_batch(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config = cli.parse_args(single(model_dir, "--shape", "(1,3,-1,-1)", "--batch_size", "4"))
    (model,) = config.models
    assert model.batch_size is None
    assert model.shape == {ANONYMOUS_INPUT: Shape.of(1, 3, -1, -1)}
    assert [record.getMessage() for record in caplog.records] == [SHAPE_BATCH_WARNING]
    assert caplog.records[0].levelno == logging.WARNING


def test_main_prints_the_shape_batch_warning_and_runs(
    model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[ServerConfig] = []

    def fake_run_server(config: ServerConfig) -> int:
        started.append(config)
        return 0

    monkeypatch.setattr("ovserve.server.run_server", fake_run_server)
    assert cli.main(single(model_dir, "--shape", "(1,3)", "--batch_size", "2")) == 0
    assert len(started) == 1
    assert started[0].models[0].batch_size is None
    assert SHAPE_BATCH_WARNING in capsys.readouterr().err


@pytest.mark.parametrize("status", [0, 1, 3])
def test_main_returns_the_server_status(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """``main`` runs the server with the parsed config and exits with whatever it returned."""
    started: list[ServerConfig] = []

    def fake_run_server(config: ServerConfig) -> int:
        started.append(config)
        return status

    monkeypatch.setattr("ovserve.server.run_server", fake_run_server)
    assert cli.main(single(model_dir)) == status
    assert [model.name for model in started[0].models] == ["m"]
    assert len(started) == 1


def test_main_refuses_a_bad_flag_without_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[ServerConfig] = []
    monkeypatch.setattr("ovserve.server.run_server", started.append)
    assert cli.main(["--model_name", "m", "--model_path", "/x", "--shape", "(1,x)"]) == 64
    assert started == []
    assert capsys.readouterr().err.strip()


def test_rest_only_is_allowed(model_dir: Path) -> None:
    argv = ["--model_name", "m", "--model_path", str(model_dir), "--rest_port", "8000"]
    assert cli.parse_args(argv).port == 0


def test_plugin_config_accepts_decoded_objects() -> None:
    assert parse_plugin_config(None) == {}
    assert parse_plugin_config({"NUM_STREAMS": 2, "ON": True}) == {"NUM_STREAMS": 2, "ON": True}


# --- preprocessing flags (OVMS's using_onnx_model demo) ----------------------------------------

DEMO_FLAGS = [
    "--layout",
    "NHWC:NCHW",
    "--mean",
    "[123.675,116.28,103.53]",
    "--scale",
    "[58.395,57.12,57.375]",
    "--shape",
    "(1,224,224,3)",
    "--color_format",
    "BGR:RGB",
    "--precision",
    "uint8:fp32",
]


def test_demo_preprocessing_flags(model_dir: Path) -> None:
    from ovserve.config.preprocessing import ColorConversion, PrecisionConversion

    (model,) = cli.parse_args(single(model_dir, *DEMO_FLAGS)).models
    options = model.preprocessing
    assert options.mean == (123.675, 116.28, 103.53)
    assert options.scale == (58.395, 57.12, 57.375)
    assert options.color_format == ColorConversion(client="RGB", converted="BGR")
    assert options.precision == PrecisionConversion(client="UINT8", converted="FP32")
    assert model.shape == {ANONYMOUS_INPUT: Shape.of(1, 224, 224, 3)}


@pytest.mark.parametrize("flag", ["--mean", "--scale", "--color_format", "--precision"])
def test_preprocessing_flag_without_layout_exits_64(
    model_dir: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = fails(single(model_dir, flag, "1"), capsys)
    assert message == f"error parsing options - {flag} parameter requires --layout to be set"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--mean",
            "[a;b;c]",
            "Couldn't parse mean parameter: The provided float is in wrong format",
        ),
        ("--scale", "one.point.zero", "Couldn't parse scale parameter: The provided float is in"),
        ("--color_format", "RGB", "The provided color format is in wrong format"),
        ("--precision", "FLOAT32", "The provided precision is in wrong format"),
    ],
)
def test_preprocessing_value_in_wrong_format_exits_1(
    model_dir: Path, flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """OVMS rejects these when its model manager starts: exit 1, not 64."""
    assert cli.main(single(model_dir, "--layout", "NCHW", flag, value)) == 1
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


# --- mistyped flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        (["--modle_name", "m"], "Did you mean --model_name?"),
        (["--rest-port", "8000"], "Did you mean --rest_port?"),
        (["--plugin_confg={}"], "Did you mean --plugin_config?"),
        (["--colour_format", "BGR:RGB"], "Did you mean --color_format?"),
    ],
)
def test_mistyped_flag_gets_a_suggestion(
    model_dir: Path, typo: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(single(model_dir, *typo))
    assert caught.value.code == 64
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= 3
    assert lines[0].startswith("ovserve: error: unrecognized arguments: ")
    assert lines[1] == suggestion


def test_flag_with_no_close_match_and_bad_value_have_no_suggestion(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in (["--zzzz"], ["--nireq", "x"]):
        with pytest.raises(SystemExit) as caught:
            cli.main(single(model_dir, *extra))
        assert caught.value.code == 64
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 2
        assert lines[1] == "Run 'ovserve --help' to see every flag."


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "x\ty"])
def test_an_unsafe_model_name_stops_start_up(
    model_dir: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model_name", name, "--model_path", str(model_dir), "--port", "9000"]
    assert fails(argv, capsys).startswith("Invalid model name ")
