"""The suite's skip policy (tests/_skips.py, tests/_skip_report.py) in a pytest of its own.

A bare skip, or an artefact that cannot be had, fails the run; the opt-out turns the latter
into a skip that is counted and shown; the summary names every reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SAMPLE = """
import pytest
from _skips import OFFLINE, unavailable

def test_passes():
    pass

def test_needs_a_download():
    unavailable(OFFLINE, "cannot download thing-1.0")
"""
BARE = """
import pytest

def test_skips_itself():
    pytest.skip("nobody asked for this")
"""


def run(tmp_path: Path, source: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OVSERVE_TESTS_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "_skip_report", "-q", "test_sample.py"],
        cwd=tmp_path,
        # Third-party plugins are not needed here; not loading them keeps this fast.
        env={**clean, "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_artefact_fails_without_the_opt_out(tmp_path: Path) -> None:
    proc = run(tmp_path, SAMPLE)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 passed" in proc.stdout
    assert "cannot download thing-1.0" in proc.stdout
    assert "OVSERVE_TESTS_OFFLINE=1" in proc.stdout


@pytest.mark.parametrize(
    "env",
    [{"OVSERVE_TESTS_OFFLINE": "1"}, {"OVSERVE_TESTS_ALLOW_SKIP": "no-ipv6,offline"}],
    ids=["offline", "allow-list"],
)
def test_the_opt_out_skips_and_the_run_says_so(tmp_path: Path, env: dict[str, str]) -> None:
    proc = run(tmp_path, SAMPLE, **env)
    assert proc.returncode == 0, proc.stdout
    assert "1 test(s) skipped" in proc.stdout
    assert "1 x [offline] cannot download thing-1.0  (opted out)" in proc.stdout


def test_a_bare_skip_fails_the_run(tmp_path: Path) -> None:
    proc = run(tmp_path, BARE, OVSERVE_TESTS_OFFLINE="1")
    assert proc.returncode == 1, proc.stdout
    assert "1 skipped" in proc.stdout
    assert "nobody asked for this  (NOT ALLOWED)" in proc.stdout
    assert "1 skip(s) were not opted into" in proc.stdout


def test_opting_into_another_kind_does_not_cover_offline(tmp_path: Path) -> None:
    proc = run(tmp_path, SAMPLE, OVSERVE_TESTS_ALLOW_SKIP="no-ipv6")
    assert proc.returncode == 1, proc.stdout
