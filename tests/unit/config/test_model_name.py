"""Model names: non-empty, no path separators, no ``..``, no control characters."""

from __future__ import annotations

import pytest

from ovserve.config.model_name import check_model_name
from ovserve.errors import ConfigError


@pytest.mark.parametrize(
    "name", ["resnet", "face-detection_v2", "a.b", "model 1", "модель", "v1.2.3", "a.b.c"]
)
def test_safe_names_pass(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "../evil",
        "a/b",
        "/abs",
        "a\\b",
        "..",
        "a..b",
        "x\ny",
        "tab\there",
        "nul\x00",
        "\x7f",
        "c1\x85",
    ],
)
def test_unsafe_names_fail(name: str) -> None:
    with pytest.raises(ConfigError, match=r"Invalid model name .*: a model name must be non-empty"):
        check_model_name(name)


def test_the_error_shows_control_characters_escaped() -> None:
    with pytest.raises(ConfigError) as caught:
        check_model_name("a\nb")
    assert "\n" not in caught.value.text
    assert '"a\\nb"' in caught.value.text
