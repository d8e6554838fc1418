"""unknown_device: which target devices exist here, and the message when one does not."""

from __future__ import annotations

import pytest

from ovserve.engine.model_preparation import unknown_device

AVAILABLE = ["CPU", "GPU.0", "GPU.1"]


@pytest.mark.parametrize(
    "device", ["CPU", "GPU", "GPU.1", "AUTO", "MULTI:CPU,GPU", "HETERO:GPU.0,CPU", "AUTO:CPU"]
)
def test_devices_that_exist(device: str) -> None:
    assert unknown_device(AVAILABLE, device) is None


@pytest.mark.parametrize(
    ("device", "name"), [("NPU", "NPU"), ("MULTI:CPU,NPU", "NPU"), ("GPU.2", "GPU.2")]
)
def test_devices_that_do_not(device: str, name: str) -> None:
    assert unknown_device(AVAILABLE, device) == (
        f"target device {name} is not available; available devices: CPU, GPU.0, GPU.1 "
        "(AUTO, MULTI:<devices> and HETERO:<devices> combine them)"
    )


def test_empty_device() -> None:
    text = unknown_device(["CPU"], " ")
    assert text is not None
    assert text.startswith("target_device is empty; available devices: CPU ")
