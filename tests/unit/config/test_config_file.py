"""config.json parsing: structure errors reject the file, value errors fail one model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from ovserve.config.config_file import (
    ConfigFile,
    ConfigFileUnreadable,
    MetricsConfig,
    parse_config,
    read_config_file,
)
from ovserve.config.layout import Layout
from ovserve.config.shape import ANONYMOUS_INPUT, AUTO, Dimension, Shape
from ovserve.config.version_policy import AllVersions, LatestVersions, SpecificVersions
from ovserve.errors import ConfigError

CONFIG = Path("/srv/models/config.json")


def parse(document: Any, *, cache_dir: Path | None = None) -> ConfigFile:
    return parse_config(json.dumps(document).encode(), CONFIG, cache_dir=cache_dir)


def one(**config: Any) -> dict[str, Any]:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "m", **config}}]}


def rejected(document: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(document)
    return caught.value.text


def model_error(**config: Any) -> str:
    parsed = parse(one(**config))
    assert parsed.models == ()
    (error,) = parsed.errors
    assert error.name == "m"
    return error.text


def test_full_entry_as_in_the_ovms_docs() -> None:
    parsed = parse(
        {
            "model_config_list": [
                {
                    "config": {
                        "name": "face",
                        "base_path": "/models/face",
                        "shape": {"data": "(1,3,200:500,200:500)"},
                        "layout": "NHWC:NCHW",
                        "model_version_policy": {"specific": {"versions": [1, 3]}},
                        "nireq": 4,
                        "target_device": "CPU",
                        "plugin_config": {"NUM_STREAMS": "1"},
                        "allow_cache": True,
                        "stateful": False,
                    }
                }
            ],
            "pipeline_config_list": [],
            "mediapipe_config_list": [],
            "custom_node_library_config_list": [],
            "custom_loader_config_list": [],
            "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
        },
        cache_dir=Path("/cache"),
    )
    (model,) = parsed.models
    assert model.name == "face"
    assert model.base_path == Path("/models/face")
    assert model.shape == {
        "data": Shape.of(1, 3, Dimension.range(200, 500), Dimension.range(200, 500))
    }
    assert model.layout == {ANONYMOUS_INPUT: Layout("NHWC", "NCHW")}
    assert model.version_policy == SpecificVersions(frozenset({1, 3}))
    assert model.nireq == 4
    assert model.plugin_config == {"NUM_STREAMS": "1"}
    assert model.allow_cache is True
    assert model.cache_dir == Path("/cache")
    assert parsed.metrics == MetricsConfig(True, ("ovms_requests_success",))
    assert parsed.errors == ()
    assert parsed.path == CONFIG


def test_defaults_and_relative_base_path() -> None:
    (model,) = parse(one()).models
    assert model.base_path == Path("/srv/models/m")
    assert model.shape == {}
    assert model.batch_size is None
    assert model.version_policy == LatestVersions(1)
    assert model.nireq == 0
    assert model.target_device == "CPU"
    assert model.allow_cache is False
    assert parse(one()).metrics is None


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("(1,3,-1,-1)", {ANONYMOUS_INPUT: Shape.of(1, 3, -1, -1)}),
        ("auto", {ANONYMOUS_INPUT: AUTO}),
        ([1, 3, 224, 224], {ANONYMOUS_INPUT: Shape.of(1, 3, 224, 224)}),
        (
            {"a": [1, 3], "b": "auto", "c": "(1,2:4)"},
            {
                "a": Shape.of(1, 3),
                "b": AUTO,
                "c": Shape.of(1, Dimension.range(2, 4)),
            },
        ),
        ('{"a": "(1,3)"}', {"a": Shape.of(1, 3)}),
    ],
)
def test_shape_forms(shape: Any, expected: dict[str, Any]) -> None:
    (model,) = parse(one(shape=shape)).models
    assert model.shape == expected


@pytest.mark.parametrize(
    ("batch", "expected"),
    [(4, Dimension.static(4)), ("1:8", Dimension.range(1, 8)), ("auto", AUTO)],
)
def test_batch_size_forms(batch: Any, expected: Any) -> None:
    (model,) = parse(one(batch_size=batch)).models
    assert model.batch_size == expected


def test_all_policy_and_per_input_layout() -> None:
    (model,) = parse(
        one(model_version_policy={"all": {}}, layout={"in": "NHWC:NCHW", "out": "CN"})
    ).models
    assert model.version_policy == AllVersions()
    assert model.layout == {"in": Layout("NHWC", "NCHW"), "out": Layout("CN")}


def test_shape_and_batch_size_warn_and_drop_the_batch(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        (model,) = parse(one(shape="(1,3)", batch_size=2)).models
    assert model.batch_size is None
    assert "Both shape and batch size have been defined" in caplog.text


# --- the whole file is rejected -------------------------------------------------------------
def test_not_json() -> None:
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: Expecting"):
        parse_config(b'{"model_config_list": [', CONFIG)


def test_not_utf8() -> None:
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        parse_config(b"\xff\xfe{}", CONFIG)


def test_duplicate_json_key() -> None:
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        parse_config(b'{"model_config_list":[{"config":{"name":"a","name":"b"}}]}', CONFIG)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "config file: expected a JSON object"),
        ({"models": []}, "config file: unknown key 'models'"),
        ({"model_config_list": {}}, "model_config_list: expected a list"),
        ({"model_config_list": [1]}, "model_config_list[0]: expected an object"),
        ({"model_config_list": [{}]}, "model_config_list[0]: missing required key 'config'"),
        (
            {"model_config_list": [{"config": {"name": "m", "base_path": "m"}, "x": 1}]},
            "model_config_list[0]: unknown key 'x'",
        ),
        (one(shapes="(1,3)"), "model_config_list[0].config: unknown key 'shapes'"),
        (one(mean={"r": 1}), "model_config_list[0].config.mean: expected a string, a number or"),
        (one(nireq=-1), "model_config_list[0].config.nireq: expected a non-negative integer"),
        (one(nireq=True), "model_config_list[0].config.nireq: expected a non-negative integer"),
        (one(shape=7), "model_config_list[0].config.shape: expected a string, an object"),
        (one(layout={"a": 1}), "model_config_list[0].config.layout: expected a string or an"),
        (one(allow_cache="yes"), "model_config_list[0].config.allow_cache: expected true or"),
        (one(model_version_policy="all"), "model_config_list[0].config.model_version_policy"),
        (
            {"model_config_list": [{"config": {"name": "m"}}]},
            "model_config_list[0].config: missing required key 'base_path'",
        ),
        ({"pipeline_config_list": [{"name": "p"}]}, "pipeline_config_list: not supported"),
        ({"monitoring": {"metrics": {"enable": 1}}}, "monitoring.metrics.enable: expected true"),
        ({"monitoring": {"metrics": {"list": []}}}, "monitoring.metrics: unknown key 'list'"),
        ({"monitoring": {"metrics": {"metrics_list": "a"}}}, "metrics_list: expected a list"),
    ],
)
def test_structure_errors_reject_the_file(document: Any, message: str) -> None:
    assert message in rejected(document)


def test_an_empty_file_object_has_no_models() -> None:
    assert parse({}).models == ()


# --- one model fails, the others are served --------------------------------------------------
def test_invalid_shape_fails_only_that_model() -> None:
    parsed = parse(
        {
            "model_config_list": [
                {"config": {"name": "good", "base_path": "g"}},
                {"config": {"name": "bad", "base_path": "b", "shape": "(1,x)"}},
            ]
        }
    )
    assert [model.name for model in parsed.models] == ["good"]
    (error,) = parsed.errors
    assert error.name == "bad"
    assert error.text.startswith(
        "model_config_list[1].config.shape: Couldn't parse shape parameter"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"shape": {"a": [1, -3]}}, "config.shape: Couldn't parse shape parameter"),
        ({"batch_size": "0"}, "config.batch_size: Couldn't parse batch_size parameter"),
        ({"layout": "NHWC:NCH"}, "config.layout: Couldn't parse layout parameter"),
        ({"model_version_policy": {"latest": {"num_versions": 0}}}, "model_version_policy"),
        ({"model_version_policy": {"newest": {}}}, "Unknown model version policy"),
        ({"plugin_config": {"A": [1]}}, "config.plugin_config: plugin_config must be"),
        ({"nireq": 100001}, "config.nireq: should be from 0 to 100000"),
        ({"stateful": True}, "config.stateful: stateful models are not supported"),
        ({"base_path": "hdfs://x/m"}, "config.base_path: hdfs://x/m: unsupported model path"),
        ({"base_path": "s3://"}, "config.base_path: s3://: missing the bucket name"),
    ],
)
def test_value_errors_fail_one_model(config: dict[str, Any], message: str) -> None:
    text = model_error(**config)
    assert text.startswith("model_config_list[0].")
    assert message in text


def test_duplicate_names_fail_that_name_only() -> None:
    parsed = parse(
        {
            "model_config_list": [
                {"config": {"name": "a", "base_path": "a1"}},
                {"config": {"name": "b", "base_path": "b"}},
                {"config": {"name": "a", "base_path": "a2"}},
            ]
        }
    )
    assert [model.name for model in parsed.models] == ["b"]
    (error,) = parsed.errors
    assert error.name == "a"
    assert error.text == (
        "Duplicated model name a in config file: model_config_list[0], model_config_list[2]"
    )


# --- files ----------------------------------------------------------------------------------
def test_read_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(one()))
    parsed = read_config_file(path)
    assert parsed.models[0].base_path == tmp_path / "m"
    path.write_text(json.dumps(one(nireq=2)))
    assert read_config_file(path).digest != parsed.digest


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileUnreadable, match="Config file not found or cannot open"):
        read_config_file(tmp_path / "nope.json")


def test_preprocessing_keys_beyond_ovms() -> None:
    """mean/scale/color_format/precision: OVMS's string syntax, mean and scale also as JSON."""
    from ovserve.config.preprocessing import ColorConversion, PrecisionConversion

    (model,) = parse(
        one(
            layout="NHWC:NCHW",
            mean=[123.675, 116.28, 103.53],
            scale="[58.395,57.12,57.375]",
            color_format="BGR:RGB",
            precision="uint8:fp32",
        )
    ).models
    assert model.preprocessing.mean == (123.675, 116.28, 103.53)
    assert model.preprocessing.scale == (58.395, 57.12, 57.375)
    assert model.preprocessing.color_format == ColorConversion("RGB", "BGR")
    assert model.preprocessing.precision == PrecisionConversion("UINT8", "FP32")
    (scalar,) = parse(one(mean=1, scale=2.5)).models
    assert (scalar.preprocessing.mean, scalar.preprocessing.scale) == (1.0, 2.5)
    assert not parse(one()).models[0].preprocessing


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"mean": "[a;b]"}, "model_config_list[0].config.mean: Couldn't parse mean parameter: The"),
        ({"scale": [1, "x"]}, "model_config_list[0].config.scale: expected a string, a number"),
        ({"color_format": "RGB"}, "The provided color format is in wrong format"),
        ({"precision": "FP32"}, "The provided precision is in wrong format"),
    ],
)
def test_preprocessing_key_errors(config: dict[str, Any], message: str) -> None:
    if isinstance(config.get("scale"), list):
        assert message in rejected(one(**config))
    else:
        assert message in model_error(**config)


# --- model names (issue 9 item 5) --------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "  ", "../evil", "a/b", "a\\b", "..", "a..b", "x\ny", "\x7f"])
def test_an_unsafe_name_fails_that_model_only(name: str) -> None:
    parsed = parse(
        {
            "model_config_list": [
                {"config": {"name": "good", "base_path": "g"}},
                {"config": {"name": name, "base_path": "b"}},
            ]
        }
    )
    assert [model.name for model in parsed.models] == ["good"]
    (error,) = parsed.errors
    assert error.name == name
    assert error.text == (
        f"model_config_list[1].config.name: Invalid model name {json.dumps(name)}: a model name "
        "must be non-empty and contain no '/', '\\', '..' or control characters"
    )
