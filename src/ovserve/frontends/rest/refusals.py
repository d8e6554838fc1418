"""The answers the HTTP transport gives on its own (before or instead of the handler).

Malformed HTTP (400), a body over the size limit (413), a stalled request (408), no room for
another connection (503), and how each failed answer is counted in the failure log.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

from ovserve.errors import RequestTooLarge
from ovserve.frontends.failure_log import FAILURES
from ovserve.frontends.rest.http import Request, Response, error_response

BAD_REQUEST: Final = Response(HTTPStatus.BAD_REQUEST.value, b'{"error":"Invalid HTTP request"}')
EVICTED: Final = Response(
    HTTPStatus.REQUEST_TIMEOUT.value,
    b'{"error":"Request timeout - the connection cap was reached while this request was slow"}',
)
TOO_MANY_CONNECTIONS: Final = Response(
    HTTPStatus.SERVICE_UNAVAILABLE.value,
    b'{"error":"Server is too busy to take this request now; retry later'
    b' - too many open connections"}',
)
_PHRASES: Final = {status.value: status.phrase for status in HTTPStatus}


def too_large(size: int, limit: int) -> Response:
    """413 for a body of ``size`` bytes (declared or read so far)."""
    return error_response(RequestTooLarge(f"body of {size} bytes; the limit is {limit} bytes"))


def request_timeout(what: str) -> Response:
    """408 for a request whose ``what`` (headers, body) stalled."""
    return Response(
        HTTPStatus.REQUEST_TIMEOUT.value,
        b'{"error":"Request timeout - the request ' + what.encode() + b' stalled"}',
    )


def record_failure(request: Request, response: Response) -> None:
    """Count a failed answer (status >= 400) in the failure log."""
    kind = f"{response.status} {_PHRASES.get(response.status, '')}".rstrip()
    FAILURES.record("REST", kind, f"{request.method} {request.path}: {response.body[:300]!r}")
