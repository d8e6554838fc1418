"""Listening addresses: the comma list both transports bind, and the port-in-use message."""

from __future__ import annotations

import pytest

from ovserve.frontends.bind import bind_targets, host_of, port_in_use


@pytest.mark.parametrize(
    ("addresses", "targets"),
    [
        ("0.0.0.0", ["0.0.0.0:9000"]),
        ("127.0.0.1, ::1", ["127.0.0.1:9000", "[::1]:9000"]),
        ("[::]", ["[::]:9000"]),
        (" , localhost ,", ["localhost:9000"]),
    ],
)
def test_bind_targets(addresses: str, targets: list[str]) -> None:
    assert bind_targets(addresses, 9000) == targets


def test_host_of_strips_the_port_and_brackets() -> None:
    assert [host_of(target) for target in ("[::1]:9000", "127.0.0.1:9000")] == ["::1", "127.0.0.1"]


def test_port_in_use_is_one_line_naming_the_port() -> None:
    text = port_in_use("gRPC", "0.0.0.0:9000", 9000).text
    assert text == "gRPC port 9000 is already in use (binding 0.0.0.0:9000)"
    assert "\n" not in text
