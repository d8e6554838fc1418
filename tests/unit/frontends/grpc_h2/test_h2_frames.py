"""Frames built by ``grpc_h2.frames`` read back by ``hyperframe`` (the h2 package's frame layer)."""

from __future__ import annotations

import pytest
from _h2_peer import parse_frames
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ovserve.frontends.grpc_h2 import frames as f


def test_preface_is_rfc_9113s() -> None:
    assert f.PREFACE.hex() == "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a"


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_535, 65_536, f.MAX_FRAME_LIMIT])
def test_frame_header_round_trips_every_length(size: int) -> None:
    header = f.frame_header(f.DATA, f.END_STREAM, 0x7FFF_FFFF, size)
    assert len(header) == f.HEADER_BYTES
    parsed, length = Frame.parse_frame_header(memoryview(header))
    assert (length, type(parsed), parsed.stream_id, set(parsed.flags)) == (
        size,
        DataFrame,
        0x7FFF_FFFF,
        {"END_STREAM"},
    )


def test_frame_carries_its_payload() -> None:
    (data,) = parse_frames(f.frame(f.DATA, 0, 3, b"hello"))
    assert isinstance(data, DataFrame)
    assert (data.stream_id, data.data) == (3, b"hello")


def test_settings_round_trip() -> None:
    settings = {
        f.SETTINGS_ENABLE_PUSH: 0,
        f.SETTINGS_MAX_CONCURRENT_STREAMS: 1000,
        f.SETTINGS_INITIAL_WINDOW_SIZE: f.MAX_WINDOW,
        f.SETTINGS_MAX_FRAME_SIZE: f.MAX_FRAME_LIMIT,
    }
    (parsed,) = parse_frames(f.settings_frame(settings))
    assert isinstance(parsed, SettingsFrame)
    assert parsed.stream_id == 0
    assert parsed.settings == settings
    body = SettingsFrame(0, settings={f.SETTINGS_HEADER_TABLE_SIZE: 0, 0x99: 7}).serialize()[9:]
    assert f.parse_settings(body) == [(f.SETTINGS_HEADER_TABLE_SIZE, 0), (0x99, 7)]


def test_window_update_rst_stream_goaway() -> None:
    window, reset, away = parse_frames(
        f.window_update(7, f.MAX_WINDOW)
        + f.rst_stream(9, f.CANCEL)
        + f.goaway(11, f.ENHANCE_YOUR_CALM, b"too_many_pings")
    )
    assert isinstance(window, WindowUpdateFrame)
    assert (window.stream_id, window.window_increment) == (7, f.MAX_WINDOW)
    assert isinstance(reset, RstStreamFrame)
    assert (reset.stream_id, reset.error_code) == (9, f.CANCEL)
    assert isinstance(away, GoAwayFrame)
    assert (away.stream_id, away.last_stream_id, away.error_code, away.additional_data) == (
        0,
        11,
        f.ENHANCE_YOUR_CALM,
        b"too_many_pings",
    )


def test_read_word() -> None:
    payload = WindowUpdateFrame(0, window_increment=123_456).serialize()[9:]
    assert f.read_word(payload) == 123_456
    assert f.read_word(b"xx" + (0xFFFF_FFFF).to_bytes(4, "big"), 2) == 0xFFFF_FFFF


def test_ping_ack_as_the_connection_builds_it() -> None:
    (ping,) = parse_frames(f.frame(f.PING, f.ACK, 0, b"12345678"))
    assert isinstance(ping, PingFrame)
    assert (set(ping.flags), ping.opaque_data) == ({"ACK"}, b"12345678")
