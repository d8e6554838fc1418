"""A pytest plugin: every skip is counted and shown, and skips nobody opted into fail the run.

See ``_skips.py`` for how a test asks to be skipped. At the end of the run this prints how many
tests were skipped and why, and turns a passing run into a failing one if any skip was not
opted into by the environment. ``tests/conftest.py`` installs it for both tiers; its own test
loads it with ``-p _skip_report``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from _skips import ALLOW_ENV, OFFLINE_ENV, is_allowed

_SKIPS: Counter[str] = Counter()


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count skipped tests by reason (xfail is not used in this suite, so count it too)."""
    if report.skipped:
        _SKIPS[_reason(report)] += 1


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Count modules skipped at collection."""
    if report.skipped:
        _SKIPS[_reason(report)] += 1


def unasked_skips() -> int:
    """Skips whose reason is not an opted-in kind."""
    return sum(count for reason, count in _SKIPS.items() if not is_allowed(reason))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the skips by reason, and whether they fail the run."""
    total = sum(_SKIPS.values())
    terminalreporter.section("skips")
    terminalreporter.write_line(f"{total} test(s) skipped")
    for reason, count in _SKIPS.most_common():
        verdict = "opted out" if is_allowed(reason) else "NOT ALLOWED"
        terminalreporter.write_line(f"  {count:4d} x {reason}  ({verdict})")
    bad = unasked_skips()
    if bad:
        terminalreporter.write_line(
            f"{bad} skip(s) were not opted into ({OFFLINE_ENV}=1 or {ALLOW_ENV}=<kind>): "
            "the run fails",
            red=True,
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run with skips nobody asked for is not a green run."""
    if unasked_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
