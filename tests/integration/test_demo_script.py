"""``./demo``'s own checks that need no model: a bad ``DEMO_PORT`` is one clear line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.mark.parametrize("port", ["abc", "99999", "0", "90 00", "-1"])
def test_bad_demo_port_is_one_line(port: str) -> None:
    proc = subprocess.run(
        [str(DEMO)],
        env={**os.environ, "DEMO_PORT": port},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"demo failed: DEMO_PORT must be a port number from 1 to 65535, got '{port}'"
    ]
