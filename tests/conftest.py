"""Run-wide rules for both tiers (unit and integration): the skip report of ``_skip_report``."""

from __future__ import annotations

from _skip_report import (
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

__all__ = [
    "pytest_collectreport",
    "pytest_runtest_logreport",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]
