"""Failed requests: a DEBUG line each, a WARNING summary at most every interval."""

from __future__ import annotations

import logging

import pytest

from ovserve.frontends.failure_log import ClientGoneFilter, FailureLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_failure_is_debug_and_the_summary_counts_by_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures = FailureLog(interval=5.0, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="ovserve.requests"):
        for _ in range(3):
            failures.record("gRPC", "INVALID_ARGUMENT", "ModelInfer: bad")
        failures.record("REST", "404 Not Found", "GET /v2/models/x")
        assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 4
        clock.now = 6.0
        failures.record("REST", "404 Not Found", "GET /v2/models/x")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "Failed requests in the last 6 s: 3 gRPC INVALID_ARGUMENT, 2 REST 404 Not Found"
    )


def test_no_summary_without_failures(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ovserve.requests"):
        FailureLog().flush()
    assert caplog.records == []


def test_abandoned_grpc_calls_are_counted_not_logged_with_a_traceback() -> None:
    class ExecuteBatchError(Exception):
        pass

    try:
        raise ExecuteBatchError(
            "Failed 'execute_batch': (<grpc_call_error.GRPC_CALL_ERROR_TOO_MANY_OPERATIONS>)"
        )
    except ExecuteBatchError as error:
        abandoned = logging.LogRecord(
            "grpc._cython.cygrpc",
            logging.ERROR,
            "",
            0,
            "Unexpected [%s]",
            ("x",),
            (type(error), error, None),
        )
    other = logging.LogRecord("grpc._cython.cygrpc", logging.ERROR, "", 0, "other", (), None)
    log_filter = ClientGoneFilter()
    assert log_filter.filter(abandoned) is False
    assert log_filter.filter(other) is True
