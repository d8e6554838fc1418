"""Skips that must be asked for: a test that cannot get what it needs fails by default.

A green run has to mean the tests ran. So a test missing something from outside (a wheel to
download, a tool, IPv6, a second core) calls :func:`unavailable`, which *fails* unless the
environment opts out of that kind of skip:

- ``OVSERVE_TESTS_OFFLINE=1``: this machine cannot download (kind ``offline``);
- ``OVSERVE_TESTS_ALLOW_SKIP=kind,kind``: any kinds (``offline``, ``no-ipv6``, ``one-core``...);
- ``OVSERVE_SKIP_ONNX_DEMO=1``: the using_onnx_model demo test (kind ``onnx-demo``).

Allowed skips are tagged ``[kind]`` in their reason. ``tests/conftest.py`` counts every skip of
the run, prints them by reason, and fails the run on any skip without an allowed tag (e.g. a
bare ``pytest.skip`` or ``skipif``), so nothing vanishes silently.
"""

from __future__ import annotations

import os
import re
from typing import NoReturn

import pytest

OFFLINE_ENV = "OVSERVE_TESTS_OFFLINE"
ALLOW_ENV = "OVSERVE_TESTS_ALLOW_SKIP"
ONNX_DEMO_ENV = "OVSERVE_SKIP_ONNX_DEMO"
OFFLINE = "offline"
ONNX_DEMO = "onnx-demo"
_TAG = re.compile(r"^\[([a-z0-9-]+)\] ")


def allowed_kinds() -> set[str]:
    """The skip kinds this run opted into."""
    kinds = {kind.strip() for kind in os.environ.get(ALLOW_ENV, "").split(",") if kind.strip()}
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
        kinds.add(OFFLINE)
    if os.environ.get(ONNX_DEMO_ENV, ""):
        kinds.add(ONNX_DEMO)
    return kinds


def unavailable(kind: str, reason: str) -> NoReturn:
    """Skip (if ``kind`` is opted into) or fail: ``reason`` says what is missing and why."""
    if kind in allowed_kinds():
        pytest.skip(f"[{kind}] {reason}")
    how = f"{OFFLINE_ENV}=1" if kind == OFFLINE else f"{ALLOW_ENV}={kind}"
    pytest.fail(f"{reason}\n(set {how} to skip this on a machine where that is expected)")


def is_allowed(reason: str) -> bool:
    """True for a skip reason produced by :func:`unavailable` for an opted-in kind."""
    match = _TAG.match(reason)
    return match is not None and match.group(1) in allowed_kinds()
