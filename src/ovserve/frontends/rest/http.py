"""Plain request and response values passed between the protocol, the app and the handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from ovserve.errors import ErrorCode, OvserveError
from ovserve.frontends.status_mapping import http_status

JSON: Final = b"application/json"
OCTET_STREAM: Final = b"application/octet-stream"

Body = bytes | memoryview
"""A request body: bytes, or a view of the buffer a large body was read into (:mod:`.body`)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request with its whole body."""

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    """Headers in arrival order, names lower-cased by the protocol."""
    body: Body

    def header(self, name: bytes) -> bytes | None:
        """The first value of a (lower-case) header, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers."""

    status: int = 200
    body: bytes = b""
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    tail: tuple[bytes | memoryview, ...] = ()
    """Sent after ``body`` as they are, not joined to it (binary tensors: views of the arrays)."""

    @property
    def length(self) -> int:
        """The Content-Length: ``body`` and ``tail`` together."""
        return len(self.body) + sum(len(part) for part in self.tail)


def error_response(error: OvserveError) -> Response:
    """OVMS's error body ``{"error": "<message> - <details>"}`` with the mapped HTTP status."""
    return Response(http_status(error.code), orjson.dumps({"error": error.text}))


def rest_error(code: ErrorCode, details: str = "") -> OvserveError:
    """An error that only the REST layer raises (unknown path, wrong method)."""
    return OvserveError(details, code)
